"""The Modelfile parser (cases from Ollama's parser/parser_test.go) and the create request it builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_lama.cli.create import build_request, model_files
from mlx_lama.cli.errors import CliError
from mlx_lama.cli.modelfile import (
    ERR_INVALID_COMMAND,
    ERR_INVALID_ROLE,
    ModelfileError,
    ParamError,
    decode,
    format_params,
    parse,
)

LLAMA3_TEMPLATE = ("{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>"
                   "{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}"
                   "<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
                   "{{ .Response }}<|eot_id|>")


def cmds(text: str) -> list[tuple[str, str]]:
    return [(c.name, c.args) for c in parse(text)]


def test_full_file() -> None:
    text = '\nFROM model1\nADAPTER adapter1\nLICENSE MIT\n' \
           'PARAMETER param1 value1\nPARAMETER param2 value2\n' \
           f'TEMPLATE """{LLAMA3_TEMPLATE}"""    \n'
    assert cmds(text) == [("model", "model1"), ("adapter", "adapter1"), ("license", "MIT"),
                          ("param1", "value1"), ("param2", "value2"), ("template", LLAMA3_TEMPLATE)]


def test_trim_space() -> None:
    text = '\nFROM "     model 1"\nADAPTER      adapter3\nLICENSE "MIT       "\n' \
           'PARAMETER param1        value1\n' \
           'PARAMETER param2    value2\nTEMPLATE """   {{ .Prompt }}   """    \n'
    assert cmds(text) == [("model", "     model 1"), ("adapter", "adapter3"), ("license", "MIT       "),
                          ("param1", "value1"), ("param2", "value2"), ("template", "   {{ .Prompt }}   ")]


@pytest.mark.parametrize(("text", "expected"), [
    ('FROM "FOO  BAR  "', [("model", "FOO  BAR  ")]),
    ('FROM "FOO BAR"\nPARAMETER param1 value1', [("model", "FOO BAR"), ("param1", "value1")]),
    ("FROM     FOOO BAR    ", [("model", "FOOO BAR")]),
    ("FROM /what/is/the path ", [("model", "/what/is/the path")]),
    ("FROM llama3:7b-instruct-q4_K_M", [("model", "llama3:7b-instruct-q4_K_M")]),
    ("PARAMETER param1 value1\nFROM foo", [("param1", "value1"), ("model", "foo")]),
    ("PARAMETER what the \nFROM lemons make lemonade ", [("what", "the"), ("model", "lemons make lemonade")]),
    ("from lower\n", [("model", "lower")]),
    ("\n# comment\nFROM foo\n\t", [("model", "foo")]),
], ids=str)
def test_from(text: str, expected: list[tuple[str, str]]) -> None:
    assert cmds(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\n",
     [("model", "foo"), ("message", "system: You are a file parser. Always parse things.")]),
    ("\nFROM foo\nMESSAGE user Hey there!\nMESSAGE assistant Hello, I want to parse all the things!\n",
     [("model", "foo"), ("message", "user: Hey there!"),
      ("message", "assistant: Hello, I want to parse all the things!")]),
    ('\nFROM foo\nMESSAGE system """\nYou are a multiline file parser. Always parse things.\n"""\n\t\t\t',
     [("model", "foo"), ("message", "system: \nYou are a multiline file parser. Always parse things.\n")]),
], ids=["one", "several", "multiline"])
def test_messages(text: str, expected: list[tuple[str, str]]) -> None:
    assert cmds(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ('\nFROM foo\nSYSTEM """\nThis is a\nmultiline system.\n"""\n\t\t\t', "\nThis is a\nmultiline system.\n"),
    ('\nFROM foo\nSYSTEM """\nThis is a\nmultiline system."""\n', "\nThis is a\nmultiline system."),
    ('\nFROM foo\nSYSTEM """This is a\nmultiline system."""\n', "This is a\nmultiline system."),
    ('\nFROM foo\nSYSTEM """This is a multiline system."""\n', "This is a multiline system."),
    ('\nFROM foo\nSYSTEM """\nThis is a multiline system with "quotes".\n"""\n',
     '\nThis is a multiline system with "quotes".\n'),
    ('\nFROM foo\nSYSTEM """"""\n', ""),
    ('\nFROM foo\nSYSTEM ""\n', ""),
    ("\nFROM foo\nSYSTEM \"'\"\n", "'"),
    ('\nFROM foo\nSYSTEM """\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""\n', '\'\'"\'""\'""\'"\'\'\'\'\'""\'""\''),
    ('\nFROM foo\nSYSTEM hello\tworld\n', "hello\tworld"),
], ids=str)
def test_quoted(text: str, expected: str) -> None:
    assert cmds(text) == [("model", "foo"), ("system", expected)]


@pytest.mark.parametrize(("line", "name", "value"), [
    ("num_ctx 1", "num_ctx", "1"), ("use_mmap true", "use_mmap", "true"), ("top_p 1.0", "top_p", "1.0"),
    ("stop ### User:", "stop", "### User:"), ("stop ### User: ", "stop", "### User:"),
    ('stop "### User:"', "stop", "### User:"), ('stop "### User: "', "stop", "### User: "),
    ('stop """### User:"""', "stop", "### User:"), ('stop """### User:\n"""', "stop", "### User:\n"),
    ("stop <|endoftext|>", "stop", "<|endoftext|>"), ("stop </s>", "stop", "</s>"),
], ids=str)
def test_parameters(line: str, name: str, value: str) -> None:
    assert cmds(f"FROM foo\nPARAMETER {line}\n") == [("model", "foo"), (name, value)]


@pytest.mark.parametrize(("text", "message"), [
    ("", "no FROM line"),
    ("PARAMETER param1 value1", "no FROM line"),
    ("\nFROM foo\nBADCOMMAND param1 value1\n", f"(line 3): {ERR_INVALID_COMMAND}"),
    ("\nFROM foo\nMESSAGE badguy I'm a bad guy!\n", f"(line 3): {ERR_INVALID_ROLE}"),
    ("\nFROM foo\nPARAMETER param1\n", "(line 4): unexpected EOF: param1"),
    ("\nFROM foo\nMESSAGE system\n", "(line 4): unexpected EOF: system"),
    ("\nFROM foo\nMESSAGE system", "(line 3): unexpected EOF"),
    ('\nFROM foo\nSYSTEM """This is a multiline system.""\n\t\t\t', "(line 3): unexpected EOF"),
    ('\nFROM foo\nSYSTEM "\n\t\t\t', "(line 3): unexpected EOF"),
    ("FROM foo\nFROM2 bar\n", f"(line 2): {ERR_INVALID_COMMAND}"),
], ids=str)
def test_errors_name_their_line(text: str, message: str) -> None:
    with pytest.raises(ModelfileError) as exc:
        parse(text)
    assert str(exc.value).startswith(message)


def test_utf16_and_bom() -> None:
    text = "FROM bob\nPARAMETER param1 1\nSYSTEM You are a utf16 file.\n"
    for data in (text.encode("utf-16"), b"\xef\xbb\xbf" + text.encode()):
        assert cmds(decode(data)) == [("model", "bob"), ("param1", "1"), ("system", "You are a utf16 file.")]


def test_multibyte() -> None:
    assert cmds("FROM foo\nSYSTEM 你好👋\n") == [("model", "foo"), ("system", "你好👋")]


@pytest.mark.parametrize(("params", "expected"), [
    ({"num_ctx": ["4096"]}, {"num_ctx": 4096}),
    ({"temperature": ["0.7"]}, {"temperature": 0.7}),
    ({"seed": ["-1"]}, {"seed": -1}),
    ({"use_mmap": ["false"]}, {"use_mmap": False}),
    ({"stop": ["a", "b"]}, {"stop": ["a", "b"]}),
], ids=str)
def test_format_params(params: dict[str, list[str]], expected: dict[str, object]) -> None:
    assert format_params(params) == expected


@pytest.mark.parametrize(("params", "message"), [
    ({"num_ctx": ["big"]}, "invalid int value [big]"),
    ({"num_ctx": ["1.5"]}, "invalid int value [1.5]"),
    ({"temperature": ["hot"]}, "invalid float value [hot]"),
    ({"use_mmap": ["maybe"]}, "invalid bool value [maybe]"),
    ({"tfs_z": ["1"]}, "unknown parameter 'tfs_z'"),
], ids=str)
def test_format_params_errors(params: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ParamError, match=message.replace("[", r"\[").replace("]", r"\]")):
        format_params(params)


def test_request_from_model_name(tmp_path: Path) -> None:
    text = ('FROM tiny-llama\nPARAMETER temperature 0.2\nPARAMETER stop "<|end|>"\nPARAMETER stop User:\n'
            'PARAMETER num_ctx 1024\nSYSTEM """You are a pirate.\nArr."""\nTEMPLATE {{ .Prompt }}\n'
            'MESSAGE user Hello\nMESSAGE assistant Ahoy\nLICENSE MIT\nLICENSE """Apache\n2.0"""\n')
    req, files = build_request(parse(text), tmp_path)
    assert files == {}
    assert req == {"from": "tiny-llama", "system": "You are a pirate.\nArr.", "template": "{{ .Prompt }}",
                   "parameters": {"temperature": 0.2, "stop": ["<|end|>", "User:"], "num_ctx": 1024},
                   "messages": [{"role": "user", "content": "Hello"},
                                {"role": "assistant", "content": "Ahoy"}],
                   "license": ["MIT", "Apache\n2.0"]}


def test_request_deprecated_parameter_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    req, _ = build_request(parse("FROM m\nPARAMETER mirostat 0\n"), tmp_path)
    assert "parameters" not in req
    assert "warning: parameter mirostat is deprecated" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "message"), [
    ("FROM m\nADAPTER ./lora\n", "(line 2): ADAPTER (LoRA adapters) is not supported by mlx-lama"),
    ("FROM m\nDRAFT ./small\n", "(line 2): DRAFT (speculative decoding models) is not supported by mlx-lama"),
    ("FROM m\n\nPARAMETER num_ctx lots\n", "(line 3): invalid int value [lots]"),
    ("FROM m\nPARAMETER bogus 1\n", "(line 2): unknown parameter 'bogus'"),
], ids=str)
def test_request_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CliError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        build_request(parse(text), tmp_path)


def test_request_from_local_directory(tmp_path: Path) -> None:
    model = tmp_path / "my-model"
    (model / ".cache").mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "pytorch_model.bin", ".cache/x"):
        (model / name).write_bytes(name.encode())
    req, files = build_request(parse("FROM ./my-model\n"), tmp_path)
    assert req == {}
    assert sorted(files) == ["config.json", "model.safetensors", "tokenizer.json"]  # no .bin, no dot-dirs
    assert files["config.json"] == model / "config.json"


def test_request_from_gguf_file(tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(b"GGUF" + b"\0" * 8)
    _, files = build_request(parse("FROM m.bin\n"), tmp_path)
    assert files == {"m.bin.gguf": tmp_path / "m.bin"}
    (tmp_path / "notgguf").write_bytes(b"hello")
    with pytest.raises(CliError, match="not in GGUF format"):
        build_request(parse("FROM notgguf\n"), tmp_path)


def test_model_files_needs_weights(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(CliError, match="no safetensors or GGUF model files"):
        model_files(tmp_path)
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    assert model_files(tmp_path) == {"x.gguf": tmp_path / "x.gguf"}
