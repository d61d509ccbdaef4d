"""Go-compatible request decoding and omitempty encoding."""

from __future__ import annotations

import pytest

from mlx_lama.api.types import ChatRequest, ChatResponse, GenerateRequest, GenerateResponse, Message
from mlx_lama.api.wire import WireError, decode, parse_body, to_wire


@pytest.mark.parametrize("body,message", [
    (b"", "missing request body"),
    (b"   ", "missing request body"),
    (b"{bad", "invalid character 'b' looking for beginning of object key string"),
    (b"xyz", "invalid character 'x' looking for beginning of value"),
    (b'{"model": "m",}', "invalid character '}' looking for beginning of object key string"),
    (b'{"model": "m"', "unexpected EOF"),
    (b'{"model" "m"}', "invalid character '\"' after object key"),
], ids=["empty", "blank", "bad-key", "bad-value", "trailing-comma", "eof", "missing-colon"])
def test_syntax_errors_use_go_wording(body: bytes, message: str) -> None:
    with pytest.raises(WireError) as err:
        parse_body(body)
    assert str(err.value) == message


@pytest.mark.parametrize("cls,data,message", [
    (GenerateRequest, {"stream": "yes"},
     "json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool"),
    (GenerateRequest, {"prompt": 5},
     "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string"),
    (GenerateRequest, {"context": "x"},
     "json: cannot unmarshal string into Go struct field GenerateRequest.context of type []int"),
    (GenerateRequest, {"options": []},
     "json: cannot unmarshal array into Go struct field GenerateRequest.options "
     "of type map[string]interface {}"),
    (ChatRequest, {"messages": {}},
     "json: cannot unmarshal object into Go struct field ChatRequest.messages of type []api.Message"),
    (ChatRequest, {"messages": [{"content": 3}]},
     "json: cannot unmarshal number into Go struct field Message.messages.content of type string"),
    (GenerateRequest, {"top_logprobs": 1.5},
     "json: cannot unmarshal number 1.5 into Go struct field GenerateRequest.top_logprobs of type int"),
    (GenerateRequest, [1], "json: cannot unmarshal array into Go value of type api.GenerateRequest"),
], ids=["bool", "string", "int-list", "map", "list-of-structs", "nested-field", "fraction", "not-object"])
def test_type_errors_use_go_wording(cls: type, data: object, message: str) -> None:
    with pytest.raises(WireError) as err:
        decode(cls, data)
    assert str(err.value) == message


def test_decoding_is_lenient_like_go() -> None:
    req = decode(ChatRequest, {"MODEL": "m", "Messages": [{"Role": "USER", "content": "hi"}],
                               "unknown": 1, "options": None, "stream": None})
    assert req.model == "m" and req.messages == [Message(role="user", content="hi")]
    assert req.options is None and req.stream is None
    assert decode(GenerateRequest, None) == GenerateRequest()
    # Go's stream decoder stops after the first value.
    assert parse_body(b'{"model": "a"} trailing') == {"model": "a"}


def test_encoding_honours_omitempty_per_field() -> None:
    chunk = to_wire(GenerateResponse(model="m", created_at="t", response=""))
    assert chunk == {"model": "m", "created_at": "t", "response": "", "done": False}
    chat = to_wire(ChatResponse(model="m", created_at="t", done=True, done_reason="stop", eval_count=3))
    assert chat["message"] == {"role": "assistant", "content": ""}
    assert chat["eval_count"] == 3 and "prompt_eval_count" not in chat
