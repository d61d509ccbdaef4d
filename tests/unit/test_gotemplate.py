"""Tests for the Go text/template interpreter used for Ollama prompt templates.

Expected strings follow Go's text/template semantics (as configured by Ollama:
``missingkey=zero`` plus its json/currentDate/... functions).  The real-template
expectations are Ollama's own template/testdata outputs.
"""

from __future__ import annotations

import datetime

import pytest

from mlx_lama.engine.gotemplate import TemplateError, parse, render_prompt

# --------------------------------------------------------------- constructs --

DATA = {
    "S": "hello",
    "E": "",
    "N": 3,
    "Z": 0,
    "F": 1.5,
    "T": True,
    "L": ["a", "b", "c"],
    "EL": [],
    "M": {"b": 2, "a": 1, "c": 3},
    "U": {"Name": "ann", "Tags": ["x", "y"], "Inner": {"Deep": "down"}},
    "Users": [{"Name": "ann", "Age": 31}, {"Name": "bob", "Age": 25}],
    "Nil": None,
}

RENDER_CASES = [
    # text, fields, missing values
    ("plain-text", "just text", "just text"),
    ("field", "{{ .S }}", "hello"),
    ("field-nospace", "{{.S}}", "hello"),
    ("nested-field", "{{ .U.Inner.Deep }}", "down"),
    ("missing-key-no-value", "{{ .Missing }}", "<no value>"),
    ("missing-chain-no-value", "{{ .Missing.Deeper }}", "<no value>"),
    ("nil-value-no-value", "{{ .Nil }}", "<no value>"),
    ("nil-inside-print", "{{ print .Nil }}", "<nil>"),
    ("empty-string", "[{{ .E }}]", "[]"),
    ("int", "{{ .N }}", "3"),
    ("float", "{{ .F }}", "1.5"),
    ("bool", "{{ .T }}", "true"),
    ("list-default-format", "{{ .L }}", "[a b c]"),
    ("map-default-format-sorted", "{{ .M }}", "map[a:1 b:2 c:3]"),
    ("dot", "{{ with .U.Inner }}{{ . }}{{ end }}", "map[Deep:down]"),
    ("root-var", "{{ range .L }}{{ $.S }}{{ end }}", "hellohellohello"),
    # trim markers
    ("trim-left", "a  \n\t{{- .S }}", "ahello"),
    ("trim-right", "{{ .S -}} \n\n b", "hellob"),
    ("trim-both", "x \n {{- .S -}} \n y", "xhelloy"),
    ("trim-only-one-side", "x {{ .S -}} y", "x helloy"),
    ("minus-number-is-not-trim", "{{-3}}", "-3"),
    ("trim-with-newlines-in-range", "{{- range .L }}\n  {{- . }}\n{{- end }}", "abc"),
    # comments
    ("comment", "a{{/* hidden */}}b", "ab"),
    ("comment-trimmed", "a \n{{- /* hidden\nmultiline */ -}}\n b", "ab"),
    # variables
    ("var-declare", "{{ $x := .S }}{{ $x }}", "hello"),
    ("var-declare-prints-nothing", "[{{ $x := 1 }}]", "[]"),
    ("var-assign", '{{ $x := "a" }}{{ $x = "b" }}{{ $x }}', "b"),
    ("var-assign-in-range-updates-outer", '{{ $n := 0 }}{{ range .L }}{{ $n = . }}{{ end }}{{ $n }}', "c"),
    ("var-field", "{{ $u := .U }}{{ $u.Name }}/{{ $u.Inner.Deep }}", "ann/down"),
    ("var-dollar-field", "{{ with .L }}{{ $.N }}{{ end }}", "3"),
    ("var-shadow-in-if", '{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}', "21"),
    # if / else if / else
    ("if-true", "{{ if .T }}yes{{ end }}", "yes"),
    ("if-false-else", "{{ if .E }}yes{{ else }}no{{ end }}", "no"),
    ("if-else-if", '{{ if eq .N 1 }}one{{ else if eq .N 3 }}three{{ else }}other{{ end }}', "three"),
    ("if-else-if-falls-through", '{{ if .Z }}a{{ else if .E }}b{{ else }}c{{ end }}', "c"),
    ("truthiness-zero", "{{ if .Z }}t{{ else }}f{{ end }}", "f"),
    ("truthiness-empty-list", "{{ if .EL }}t{{ else }}f{{ end }}", "f"),
    ("truthiness-empty-map", "{{ if .U.Missing }}t{{ else }}f{{ end }}", "f"),
    ("truthiness-nonempty-map", "{{ if .M }}t{{ else }}f{{ end }}", "t"),
    ("truthiness-nil", "{{ if .Nil }}t{{ else }}f{{ end }}", "f"),
    ("if-pipeline-var-scoped", "{{ if $x := .S }}{{ $x }}{{ end }}", "hello"),
    # with
    ("with-sets-dot", "{{ with .U }}{{ .Name }}{{ end }}", "ann"),
    ("with-else", "{{ with .E }}x{{ else }}empty{{ end }}", "empty"),
    ("with-else-with", "{{ with .E }}a{{ else with .S }}{{ . }}{{ else }}c{{ end }}", "hello"),
    ("with-var", "{{ with $v := .N }}{{ $v }}{{ . }}{{ end }}", "33"),
    # range
    ("range-list", "{{ range .L }}<{{ . }}>{{ end }}", "<a><b><c>"),
    ("range-index-value", "{{ range $i, $v := .L }}{{ $i }}={{ $v }} {{ end }}", "0=a 1=b 2=c "),
    ("range-value-only", "{{ range $v := .L }}{{ $v }}{{ end }}", "abc"),
    ("range-map-sorted", "{{ range $k, $v := .M }}{{ $k }}{{ $v }}{{ end }}", "a1b2c3"),
    ("range-map-values", "{{ range .M }}{{ . }}{{ end }}", "123"),
    ("range-structs", "{{ range .Users }}{{ .Name }}:{{ .Age }};{{ end }}", "ann:31;bob:25;"),
    ("range-else-empty", "{{ range .EL }}x{{ else }}none{{ end }}", "none"),
    ("range-else-nil", "{{ range .Missing }}x{{ else }}none{{ end }}", "none"),
    ("range-break", '{{ range .L }}{{ if eq . "b" }}{{ break }}{{ end }}{{ . }}{{ end }}', "a"),
    ("range-continue", '{{ range .L }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ . }}{{ end }}', "ac"),
    ("range-nested-dollar", "{{ range .L }}{{ range $.Users }}{{ .Name }}{{ end }}|{{ end }}", "annbob|annbob|annbob|"),
    ("range-int", "{{ range 3 }}{{ . }}{{ end }}", "012"),
    ("range-vars-scoped-per-iteration", "{{ range .L }}{{ $x := . }}{{ $x }}{{ end }}", "abc"),
    # pipelines and parentheses
    ("pipe-final-arg", '{{ .S | printf "%s!" }}', "hello!"),
    ("pipe-chain", '{{ "a" | print "b" | print "c" }}', "cba"),
    ("paren", "{{ (len .L) }}", "3"),
    ("paren-args", '{{ printf "%d-%d" (len .L) (len .M) }}', "3-3"),
    ("paren-chain-field", '{{ (index .Users 1).Name }}', "bob"),
    # literals
    ("string-escapes", r'{{ "a\tb\n\"q\" \u00e9\x41" }}', 'a\tb\n"q" \u00e9A'),
    ("raw-string", "{{ `raw \\n {{ not }}` }}", "raw \\n {{ not }}"),
    ("int-literal", "{{ 42 }}", "42"),
    ("hex-literal", "{{ 0x1F }}", "31"),
    ("negative-literal", "{{ -7 }}", "-7"),
    ("float-literal", "{{ 2.50 }}", "2.5"),
    ("float-exponent-literal", "{{ 1e3 }}", "1000"),
    ("float-large-uses-exponent", "{{ 1e6 }}", "1e+06"),
    ("float-small-uses-exponent", "{{ 0.00001 }}", "1e-05"),
    ("char-literal", "{{ 'a' }}", "97"),
    ("bool-literals", "{{ true }} {{ false }}", "true false"),
    ("nil-argument", "{{ printf \"%v\" nil }}", "<nil>"),
    # logic
    ("and-returns-first-falsy", "{{ and 1 0 2 }}", "0"),
    ("and-returns-last", '{{ and 1 "x" }}', "x"),
    ("or-returns-first-truthy", '{{ or "" 0 "y" }}', "y"),
    ("or-returns-last", '{{ or "" 0 }}', "0"),
    ("and-short-circuits", "{{ and false (index .L 99) }}", "false"),
    ("or-short-circuits", "{{ or true (index .L 99) }}", "true"),
    ("and-with-pipe", "{{ .S | and 1 }}", "hello"),
    ("not", "{{ not .E }} {{ not .S }}", "true false"),
    # comparisons
    ("eq-strings", '{{ eq .S "hello" }}', "true"),
    ("eq-multi", '{{ eq .S "x" "y" "hello" }}', "true"),
    ("eq-multi-none", '{{ eq .N 1 2 }}', "false"),
    ("eq-nil", "{{ eq .Missing .Nil }}", "true"),
    ("eq-nil-vs-string", '{{ eq .Missing "x" }}', "false"),
    ("eq-int-float-lenient", "{{ eq .N 3.0 }}", "true"),
    ("ne", '{{ ne .S "x" }}', "true"),
    ("lt-le-gt-ge-ints", "{{ lt 1 2 }}{{ le 2 2 }}{{ gt 1 2 }}{{ ge 2 3 }}", "truetruefalsefalse"),
    ("lt-strings", '{{ lt "abc" "abd" }}', "true"),
    # len / index / slice
    ("len-list", "{{ len .L }}", "3"),
    ("len-map", "{{ len .M }}", "3"),
    ("len-string-is-bytes", '{{ len "héllo" }}', "6"),
    ("index-list", "{{ index .L 1 }}", "b"),
    ("index-map", '{{ index .M "b" }}', "2"),
    ("index-map-missing", '{{ index .M "zz" }}', "<no value>"),
    ("index-nested", '{{ index .Users 0 "Name" }}', "ann"),
    ("slice-list", "{{ slice .L 1 }}", "[b c]"),
    ("slice-list-range", "{{ slice .L 0 2 }}", "[a b]"),
    ("slice-string", '{{ slice "hello" 1 3 }}', "el"),
    ("slice-len-idiom", "{{ range $i, $_ := .L }}{{ len (slice $.L $i) }}{{ end }}", "321"),
    # print family
    ("print-spacing", '{{ print 1 2 "a" 3 "b" "c" }}', "1 2a3bc"),
    ("println", '{{ println 1 "a" }}', "1 a\n"),
    ("printf-verbs", '{{ printf "%s|%d|%v|%q|%.2f|%t" .S .N .L .S .F .T }}', 'hello|3|[a b c]|"hello"|1.50|true'),
    ("printf-width", '{{ printf "[%5d][%-4s][%05.1f][%x]" 42 "ab" 3.14159 255 }}', "[   42][ab  ][003.1][ff]"),
    ("printf-percent", '{{ printf "100%%" }}', "100%"),
    ("printf-missing-arg", '{{ printf "%s %d" "a" }}', "a %!d(MISSING)"),
    ("printf-extra-arg", '{{ printf "%s" "a" 2 }}', "a%!(EXTRA int=2)"),
    ("printf-bad-verb", '{{ printf "%d" "x" }}', "%!d(string=x)"),
    ("printf-f-int-lenient", '{{ printf "%f" 2 }}', "2.000000"),
    ("printf-f-zero-precision", '{{ printf "%.f" 2.5 }}', "2"),
    ("printf-newline-escape", '{{ printf "%s\\n\\n%s" "a" "b" }}', "a\n\nb"),
    # json (Go's encoding/json: compact, sorted keys, HTML-safe)
    ("json-map", "{{ json .M }}", '{"a":1,"b":2,"c":3}'),
    ("json-list", "{{ json .L }}", '["a","b","c"]'),
    ("json-nested", "{{ json .U }}", '{"Inner":{"Deep":"down"},"Name":"ann","Tags":["x","y"]}'),
    ("json-html-escaped", '{{ json "<a & b>" }}', '"\\u003ca \\u0026 b\\u003e"'),
    ("json-float-int-valued", "{{ json 2.0 }}", "2"),
    ("json-nil", "{{ json .Nil }}", "null"),
    ("float-1e8-default-format", "{{ 123456789.0 }}", "1.23456789e+08"),
    ("json-float-large-plain", "{{ json 123456789.0 }}", "123456789"),
    ("json-float-tiny-exponent", "{{ json 0.0000001 }}", "1e-7"),
    ("json-bool", "{{ json .T }}", "true"),
    # other builtins
    ("html", '{{ html "<b>\\"x\\" & \'y\'</b>" }}', "&lt;b&gt;&#34;x&#34; &amp; &#39;y&#39;&lt;/b&gt;"),
    ("urlquery", '{{ urlquery "a b&c" }}', "a+b%26c"),
    ("to-typescript-type-raw-dict-lenient", '{{ toTypeScriptType .P }}', "number | null"),
]


@pytest.mark.parametrize(("src", "expected"), [c[1:] for c in RENDER_CASES], ids=[c[0] for c in RENDER_CASES])
def test_render(src: str, expected: str) -> None:
    data = dict(DATA, P={"type": ["integer", "null"]})
    assert parse(src).render(data) == expected


def test_current_and_yesterday_date() -> None:
    today = datetime.date.today()
    out = parse('{{ currentDate }}|{{ yesterdayDate "2006-01-02" }}').render({})
    assert out in {
        f"{today.isoformat()}|{(today - datetime.timedelta(days=1)).isoformat()}",
        # the clock may tick over midnight between the two calls
        f"{today.isoformat()}|{today.isoformat()}",
    }


def test_template_error_is_value_error() -> None:
    assert issubclass(TemplateError, ValueError)


def test_parse_is_cached() -> None:
    assert parse("{{ .A }}") is parse("{{ .A }}")


def test_render_prompt_propagates_parse_errors() -> None:
    with pytest.raises(TemplateError, match="unclosed action"):
        render_prompt("{{ .Prompt", prompt="x")


# --------------------------------------------------------------- variables --

VARIABLE_CASES = [
    ("prompt-only", "{{ .Prompt }}", {"Prompt"}),
    ("generate-style", "{{ if .System }}{{ .System }}{{ end }}{{ if .Prompt }}{{ .Prompt }}{{ end }}{{ .Response }}",
     {"System", "Prompt", "Response"}),
    ("messages-range-inner-fields-not-top", "{{ range .Messages }}{{ .Role }}{{ .Content }}{{ end }}", {"Messages"}),
    ("dollar-inside-range", "{{ range .Messages }}{{ if $.Tools }}{{ end }}{{ end }}", {"Messages", "Tools"}),
    ("with-body-not-top", "{{ with .Tools }}{{ .Function }}{{ end }}{{ $.Suffix }}", {"Tools", "Suffix"}),
    ("with-else-is-top", "{{ with .A }}{{ .B }}{{ else }}{{ .C }}{{ end }}", {"A", "C"}),
    ("if-body-is-top", "{{ if .System }}{{ .Prompt }}{{ end }}", {"System", "Prompt"}),
    ("function-args", '{{ printf "%s" (index .Messages 0).Content }}', {"Messages"}),
    ("variable-chain", "{{ $x := .A }}{{ $x.B }}", {"A"}),
    ("no-fields", "plain {{ 1 }}", set()),
]


@pytest.mark.parametrize(("src", "expected"), [c[1:] for c in VARIABLE_CASES], ids=[c[0] for c in VARIABLE_CASES])
def test_variables(src: str, expected: set[str]) -> None:
    assert parse(src).variables() == expected


# ------------------------------------------------------------ parse errors --

PARSE_ERROR_CASES = [
    ("unclosed-action", "{{ .Prompt ", "template: 1:12: unclosed action"),
    ("unexpected-brace-in-operand", "{{ .Prompt }", 'template: 1:12: unexpected "}" in operand'),
    ("unexpected-end", "a{{ end }}", "template: 1:5: unexpected {{end}}"),
    ("unexpected-else", "{{ else }}", "template: 1:4: unexpected {{else}}"),
    ("unclosed-if-eof", "{{ if .X }}a", "template: 1:13: unexpected EOF"),
    ("unclosed-range-eof-line-2", "{{ range .X }}\n{{ .Y }}", "template: 2:9: unexpected EOF"),
    ("unknown-function", "{{ foo .X }}", 'template: 1:4: function "foo" not defined'),
    ("undefined-variable", "{{ $x }}", 'template: 1:4: undefined variable "$x"'),
    ("variable-out-of-scope", "{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}", 'template: 1:39: undefined variable "$y"'),
    ("empty-action", "{{ }}", "template: 1:4: missing value for command"),
    ("empty-if", "{{ if }}{{ end }}", "template: 1:7: missing value for if"),
    ("break-outside-range", "{{ break }}", "template: 1:4: {{break}} outside {{range}}"),
    ("continue-outside-range", "{{ if 1 }}{{ continue }}{{ end }}", "template: 1:14: {{continue}} outside {{range}}"),
    ("non-executable-stage", "{{ .X | 3 }}", "template: 1:9: non executable command in pipeline stage 2"),
    ("unterminated-string", '{{ "abc }}', "template: 1:4: unterminated quoted string"),
    ("unterminated-raw-string", "{{ `abc }}", "template: 1:4: unterminated raw quoted string"),
    ("unclosed-comment", "{{/* abc }}", "template: 1:1: unclosed comment"),
    ("comment-not-closing-action", "{{/* abc */ .X }}", "template: 1:1: comment ends before closing delimiter"),
    ("unclosed-paren", "{{ (.X }}", "template: 1:8: unclosed left paren"),
    ("unexpected-right-paren", "{{ .X) }}", "template: 1:6: unexpected right paren"),
    ("bad-number", "{{ 3x }}", 'template: 1:4: bad number syntax: "3x"'),
    ("bad-character", '{{ .X"a" }}', "template: 1:6: bad character U+0022 '\"'"),
    ("else-if-in-range", "{{ range .X }}{{ else if .Y }}{{ end }}", "template: 1:23: unexpected <if> in input"),
    ("else-twice", "{{ if 1 }}{{ else }}{{ else }}{{ end }}", "template: 1:24: expected end; found {{else}}"),
    ("define-unsupported", '{{ define "x" }}{{ end }}', "template: 1:4: {{define}} is not supported"),
    ("too-many-range-decls", "{{ range $a, $b, $c := .X }}{{ end }}", "template: 1:16: too many declarations in range"),
    ("dot-after-literal", '{{ "x".Y }}', 'template: 1:4: unexpected . after term "\\"x\\""'),
    ("error-on-later-line", "line1\nline2 {{ if }}", "template: 2:13: missing value for if"),
]


@pytest.mark.parametrize(("src", "message"), [c[1:] for c in PARSE_ERROR_CASES], ids=[c[0] for c in PARSE_ERROR_CASES])
def test_parse_errors(src: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse(src)
    assert str(info.value) == message


# -------------------------------------------------------- execution errors --

EXEC_ERROR_CASES = [
    ("field-of-string", "{{ .S.Len }}", "can't evaluate field Len in type string"),
    ("eq-incompatible", '{{ eq .S 1 }}', "error calling eq: incompatible types for comparison: string and int"),
    ("eq-missing-arg", "{{ eq .S }}", "error calling eq: missing argument for comparison"),
    ("lt-bool", "{{ lt true false }}", "error calling lt: invalid type for comparison"),
    ("index-out-of-range", "{{ index .L 5 }}", "error calling index: index out of range: 5"),
    ("index-of-nil", "{{ index .Nil 0 }}", "error calling index: index of untyped nil"),
    ("len-of-int", "{{ len .N }}", "error calling len: len of type int"),
    ("len-of-nil", "{{ len .Missing }}", "error calling len: len of nil pointer"),
    ("slice-bad-range", "{{ slice .L 2 1 }}", "error calling slice: invalid slice index: 2 > 1"),
    ("wrong-arg-count-variadic", "{{ printf }}", "wrong number of args for printf: want at least 1 got 0"),
    ("wrong-arg-count-fixed", "{{ not 1 2 }}", "wrong number of args for not: want 1 got 2"),
    ("map-field-with-args", "{{ .M 1 }}", "M is not a method but has arguments"),
    ("nil-command", "{{ nil }}", "nil is not a command"),
    ("literal-with-args", "{{ 1 2 }}", "can't give argument to non-function 1"),
    ("range-over-string", "{{ range .S }}{{ end }}", "range can't iterate over hello"),
    ("assign-undeclared", "{{ $x := 1 }}{{ with 1 }}{{ $y := 2 }}{{ end }}{{ $x = 3 }}{{ $x }}", None),
]


@pytest.mark.parametrize(("src", "message"), [c[1:] for c in EXEC_ERROR_CASES], ids=[c[0] for c in EXEC_ERROR_CASES])
def test_exec_errors(src: str, message: str | None) -> None:
    tmpl = parse(src)
    if message is None:  # control case: valid template renders
        assert tmpl.render(DATA) == "3"
        return
    with pytest.raises(TemplateError) as info:
        tmpl.render(DATA)
    assert str(info.value).startswith("template: 1:")
    assert str(info.value).endswith(message)


def test_exec_error_names_node_and_position() -> None:
    with pytest.raises(TemplateError) as info:
        parse("ab\n  {{ .S.Len }}").render(DATA)
    assert str(info.value) == "template: 2:6: executing at <.S.Len>: can't evaluate field Len in type string"


def test_struct_missing_field_is_an_error() -> None:
    with pytest.raises(TemplateError, match=r"can't evaluate field Nope in type \*template.templateMessage"):
        render_prompt("{{ range .Messages }}{{ .Nope }}{{ end }}", messages=[{"role": "user", "content": "hi"}])


# ---------------------------------------------------- real Ollama templates --

OLLAMA_TEMPLATES = {
    "llama3-instruct": (
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        "{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "chatml": "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
    "mistral-instruct": (
        '[INST] {{ range $index, $_ := .Messages }}\n{{- if eq .Role "system" }}{{ .Content }}\n\n'
        '{{ else if eq .Role "user" }}{{ .Content }}[/INST]\n'
        '{{- else if eq .Role "assistant" }} {{ .Content }}</s>[INST] {{ end }}\n{{- end }}'
    ),
    "gemma-instruct": (
        '{{- $system := "" }}\n{{- range .Messages }}\n{{- if eq .Role "system" }}\n'
        '{{- if not $system }}{{ $system = .Content }}\n'
        '{{- else }}{{ $system = printf "%s\\n\\n%s" $system .Content }}\n{{- end }}\n{{- continue }}\n'
        '{{- else if eq .Role "user" }}<start_of_turn>user\n{{- if $system }}\n{{ $system }}\n'
        '{{- $system = "" }}\n{{- end }}\n{{- else if eq .Role "assistant" }}<start_of_turn>model\n{{- end }}\n'
        "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n"
    ),
    "phi-3": "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n",
    "alpaca": (
        '{{- $system := "" }}\n{{- range .Messages }}\n{{- if eq .Role "system" }}\n'
        '{{- if not $system }}{{ $system = .Content }}\n'
        '{{- else }}{{ $system = printf "%s\\n\\n%s" $system .Content }}\n{{- end }}\n'
        '{{- else if eq .Role "user" }}\n{{- if $system }}{{ $system }}\n\n{{ $system = "" }}\n{{- end }}'
        "### Instruction:\n{{ .Content }}\n\n{{ else if eq .Role \"assistant\" }}### Response:\n{{ .Content }}\n\n"
        "{{ end }}\n{{- end }}### Response:\n"
    ),
}

U1, A1, U2, SYS = (
    "Hello, how are you?",
    "I'm doing great. How can I help you today?",
    "I'd like to show off how chat templating works!",
    "You are a helpful assistant.",
)
CONVERSATIONS = {
    "user": [{"role": "user", "content": U1}],
    "user-assistant-user": [
        {"role": "user", "content": U1},
        {"role": "assistant", "content": A1},
        {"role": "user", "content": U2},
    ],
}
CONVERSATIONS["system-user-assistant-user"] = [{"role": "system", "content": SYS}, *CONVERSATIONS["user-assistant-user"]]

# From ollama/ollama template/testdata/<name>.gotmpl/<conversation>.
OLLAMA_EXPECTED = {
    ("llama3-instruct", "user"): f"<|start_header_id|>user<|end_header_id|>\n\n{U1}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    ("llama3-instruct", "user-assistant-user"): (
        f"<|start_header_id|>user<|end_header_id|>\n\n{U1}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        f"{A1}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{U2}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    ("llama3-instruct", "system-user-assistant-user"): (
        f"<|start_header_id|>system<|end_header_id|>\n\n{SYS}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{U1}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        f"{A1}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{U2}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    ("chatml", "user"): f"<|im_start|>user\n{U1}<|im_end|>\n<|im_start|>assistant\n",
    ("chatml", "user-assistant-user"): (
        f"<|im_start|>user\n{U1}<|im_end|>\n<|im_start|>assistant\n{A1}<|im_end|>\n"
        f"<|im_start|>user\n{U2}<|im_end|>\n<|im_start|>assistant\n"
    ),
    ("chatml", "system-user-assistant-user"): (
        f"<|im_start|>system\n{SYS}<|im_end|>\n<|im_start|>user\n{U1}<|im_end|>\n<|im_start|>assistant\n{A1}<|im_end|>\n"
        f"<|im_start|>user\n{U2}<|im_end|>\n<|im_start|>assistant\n"
    ),
    ("mistral-instruct", "user"): f"[INST] {U1}[/INST]",
    ("mistral-instruct", "user-assistant-user"): f"[INST] {U1}[/INST] {A1}</s>[INST] {U2}[/INST]",
    ("mistral-instruct", "system-user-assistant-user"): f"[INST] {SYS}\n\n{U1}[/INST] {A1}</s>[INST] {U2}[/INST]",
    ("gemma-instruct", "user"): f"<start_of_turn>user\n{U1}<end_of_turn>\n<start_of_turn>model\n",
    ("gemma-instruct", "user-assistant-user"): (
        f"<start_of_turn>user\n{U1}<end_of_turn>\n<start_of_turn>model\n{A1}<end_of_turn>\n"
        f"<start_of_turn>user\n{U2}<end_of_turn>\n<start_of_turn>model\n"
    ),
    ("gemma-instruct", "system-user-assistant-user"): (
        f"<start_of_turn>user\n{SYS}\n{U1}<end_of_turn>\n<start_of_turn>model\n{A1}<end_of_turn>\n"
        f"<start_of_turn>user\n{U2}<end_of_turn>\n<start_of_turn>model\n"
    ),
    ("phi-3", "user"): f"<|user|>\n{U1}<|end|>\n<|assistant|>\n",
    ("phi-3", "user-assistant-user"): f"<|user|>\n{U1}<|end|>\n<|assistant|>\n{A1}<|end|>\n<|user|>\n{U2}<|end|>\n<|assistant|>\n",
    ("phi-3", "system-user-assistant-user"): (
        f"<|system|>\n{SYS}<|end|>\n<|user|>\n{U1}<|end|>\n<|assistant|>\n{A1}<|end|>\n<|user|>\n{U2}<|end|>\n<|assistant|>\n"
    ),
    ("alpaca", "user"): f"### Instruction:\n{U1}\n\n### Response:\n",
    ("alpaca", "user-assistant-user"): (
        f"### Instruction:\n{U1}\n\n### Response:\n{A1}\n\n### Instruction:\n{U2}\n\n### Response:\n"
    ),
    ("alpaca", "system-user-assistant-user"): (
        f"{SYS}\n\n### Instruction:\n{U1}\n\n### Response:\n{A1}\n\n### Instruction:\n{U2}\n\n### Response:\n"
    ),
}


@pytest.mark.parametrize(("name", "conversation"), list(OLLAMA_EXPECTED), ids=[f"{n}-{c}" for n, c in OLLAMA_EXPECTED])
def test_ollama_templates(name: str, conversation: str) -> None:
    out = render_prompt(OLLAMA_TEMPLATES[name], messages=CONVERSATIONS[conversation])
    assert out == OLLAMA_EXPECTED[(name, conversation)]


def test_ollama_templates_handle_messages() -> None:
    for src in OLLAMA_TEMPLATES.values():
        assert "Messages" in parse(src).variables()


# ------------------------------------------------------- Ollama's Execute --

LEGACY_MISTRAL = "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] "
LEGACY_CHATML = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n"
    "{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)
HELLO = [
    {"role": "user", "content": "Hello friend!"},
    {"role": "assistant", "content": "Hello human!"},
    {"role": "user", "content": "What is your name?"},
]

# Ollama's TestExecuteWithMessages: given messages=, legacy (.System/.Prompt/.Response) templates
# render once per exchange and must agree with their .Messages equivalents.
EXECUTE_CASES = [
    ("mistral-no-response", LEGACY_MISTRAL, HELLO,
     "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "),
    ("mistral-response", LEGACY_MISTRAL + "{{ .Response }}", HELLO,
     "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "),
    ("mistral-messages",
     '[INST] {{ if .System }}{{ .System }}\n\n{{ end }}\n{{- range .Messages }}\n{{- if eq .Role "user" }}'
     '{{ .Content }}[/INST] {{ else if eq .Role "assistant" }}{{ .Content }}[INST] {{ end }}\n{{- end }}',
     HELLO, "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "),
    ("mistral-system-legacy", LEGACY_MISTRAL, [{"role": "system", "content": "You are a helpful assistant!"}, *HELLO],
     "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human![INST] What is your name?[/INST] "),
    ("mistral-assistant-prefill", "[INST] {{ .Prompt }}[/INST] {{ .Response }}",
     [*HELLO, {"role": "assistant", "content": "My name is Ollama and I"}],
     "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is Ollama and I"),
    ("chatml-legacy-cut-after-response", LEGACY_CHATML, [{"role": "system", "content": "You are a helpful assistant!"}, *HELLO],
     "<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n<|im_start|>user\nHello friend!<|im_end|>\n"
     "<|im_start|>assistant\nHello human!<|im_end|>\n<|im_start|>user\nWhat is your name?<|im_end|>\n"
     "<|im_start|>assistant\n"),
    ("prompt-only-gets-response-appended", "{{ .Prompt }}", HELLO, "Hello friend!Hello human!What is your name?"),
    ("consecutive-users-merged", "{{ range .Messages }}{{ .Role }}:{{ .Content }};{{ end }}",
     [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "tool", "content": "t1"},
      {"role": "tool", "content": "t2"}], "user:a\n\nb;tool:t1;tool:t2;"),
    ("all-system-messages-joined", "{{ .System }}|{{ range .Messages }}{{ .Role }},{{ end }}",
     [{"role": "system", "content": "s1"}, {"role": "user", "content": "u"}, {"role": "system", "content": "s2"}],
     "s1\n\ns2|system,user,system,"),
    ("roles-lowercased", "{{ range .Messages }}{{ .Role }}{{ end }}", [{"role": "USER", "content": "x"}], "user"),
    ("prompt-not-in-messages-data", "{{ range .Messages }}{{ end }}{{ .Prompt }}", HELLO, "<no value>"),
]


@pytest.mark.parametrize(("src", "messages", "expected"), [c[1:] for c in EXECUTE_CASES], ids=[c[0] for c in EXECUTE_CASES])
def test_render_prompt_messages(src: str, messages: list[dict], expected: str) -> None:
    assert render_prompt(src, messages=messages) == expected


GENERATE = "{{ if .System }}S:{{ .System }} {{ end }}{{ if .Prompt }}U:{{ .Prompt }} {{ end }}A:{{ .Response }}</s>"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"prompt": "hi"}, "U:hi A:</s>"),
        ({"system": "be nice", "prompt": "hi", "response": "ok"}, "S:be nice U:hi A:ok</s>"),
        ({"system": "sys", "prompt": "p2", "messages": [{"role": "user", "content": "p1"}, {"role": "assistant", "content": "r1"}]},
         "S:sys U:p1 A:r1</s>U:p2 A:"),
        ({"prompt": "p2", "response": "Once", "messages": [{"role": "user", "content": "p1"}]}, "U:p1\n\np2 A:Once"),
    ],
    ids=["one-turn", "one-turn-with-response", "messages-use-ollama-legacy-loop", "messages-legacy-prefill-and-merge"],
)
def test_render_prompt_generate_style(kwargs: dict, expected: str) -> None:
    assert render_prompt(GENERATE, **kwargs) == expected


def test_response_sentinel_marks_where_generation_starts() -> None:
    # How engine/prompt.py finds the end of the prompt in a one-turn template.
    sentinel = "\x00cut\x00"
    out = render_prompt(LEGACY_CHATML, system="S", prompt="P", response=sentinel)
    assert out[:out.index(sentinel)] == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nP<|im_end|>\n<|im_start|>assistant\n"


def test_per_turn_renders_rebuild_ollama_legacy_output() -> None:
    first = render_prompt(LEGACY_MISTRAL, prompt="Hello friend!", response="Hello human!")
    last = render_prompt(LEGACY_MISTRAL, prompt="What is your name?")
    assert first + last == "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "


def test_generate_with_messages_template_builds_the_conversation() -> None:
    out = render_prompt(OLLAMA_TEMPLATES["chatml"], system="S", prompt="P")
    assert out == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nP<|im_end|>\n<|im_start|>assistant\n"


def test_messages_template_gets_response_field() -> None:
    src = "{{ range .Messages }}{{ .Content }}|{{ end }}{{ .Response }}"
    assert render_prompt(src, messages=[{"role": "user", "content": "q"}], response="R") == "q|R"


def test_render_generate_style_directly() -> None:
    data = {"System": "sys", "Prompt": "p", "Response": "r"}
    assert parse(GENERATE).render(data) == "S:sys U:p A:r</s>"
    assert parse(GENERATE).render({"Prompt": "p"}) == "U:p A:<no value></s>"


SUFFIX = "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>\n{{- else }}{{ .Prompt }}\n{{- end }}"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"messages": [{"role": "user", "content": "hello"}]}, "hello"),
        ({"prompt": "def add(", "suffix": "return x"}, "<PRE> def add( <SUF>return x <MID>"),
        ({"prompt": "hello"}, "hello"),
    ],
    ids=["message", "prompt-suffix", "prompt-without-suffix"],
)
def test_render_prompt_suffix(kwargs: dict, expected: str) -> None:
    assert render_prompt(SUFFIX, **kwargs) == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [({}, "false,,false"), ({"think": True, "think_level": "high"}, "true,high,true"), ({"think": False}, "false,,true"),
     ({"think": "low"}, "true,low,true")],
    ids=["unset", "set-with-level", "explicit-false", "level-string"],
)
def test_render_prompt_think(kwargs: dict, expected: str) -> None:
    src = "{{ range .Messages }}{{ end }}{{ .Think }},{{ .ThinkLevel }},{{ .IsThinkSet }}"
    assert render_prompt(src, messages=[], **kwargs) == expected


# ------------------------------------------------------------------- tools --

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {
            "type": "object",
            "properties": {
                "unit": {"type": "string", "enum": ["c", "f"]},
                "location": {"type": "string", "description": "City"},
            },
            "required": ["location"],
        },
    },
}
WEATHER_JSON = (
    '[{"type":"function","function":{"name":"get_weather","description":"Get the weather","parameters":'
    '{"type":"object","required":["location"],"properties":{"location":{"type":"string","description":"City"},'
    '"unit":{"type":"string","enum":["c","f"]}}}}}]'
)
CALL = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"unit": "c", "location": "Paris"}}}]}

# The Mistral v0.3 tools template from Ollama's docs/template.mdx.
MISTRAL_TOOLS = """{{- range $index, $_ := .Messages }}
{{- if eq .Role "user" }}
{{- if and (le (len (slice $.Messages $index)) 2) $.Tools }}[AVAILABLE_TOOLS] {{ json $.Tools }}[/AVAILABLE_TOOLS]
{{- end }}[INST] {{ if and (eq (len (slice $.Messages $index)) 1) $.System }}{{ $.System }}

{{ end }}{{ .Content }}[/INST]
{{- else if eq .Role "assistant" }}
{{- if .Content }} {{ .Content }}</s>
{{- else if .ToolCalls }}[TOOL_CALLS] [
{{- range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}
{{- end }}]</s>
{{- end }}
{{- else if eq .Role "tool" }}[TOOL_RESULTS] {"content": {{ .Content }}}[/TOOL_RESULTS]
{{- end }}
{{- end }}"""

TOOL_CASES = [
    ("mistral-tools-available", MISTRAL_TOOLS, {"system": "Be brief.", "messages": [{"role": "user", "content": "Weather?"}], "tools": [WEATHER]},
     f"[AVAILABLE_TOOLS] {WEATHER_JSON}[/AVAILABLE_TOOLS][INST] Be brief.\n\nWeather?[/INST]"),
    ("mistral-tool-call-and-result", MISTRAL_TOOLS,
     {"messages": [{"role": "user", "content": "Weather?"}, CALL, {"role": "tool", "content": '{"temp": 20}'}], "tools": [WEATHER]},
     '[INST] Weather?[/INST][TOOL_CALLS] [{"name": "get_weather", "arguments": {"location":"Paris","unit":"c"}}]</s>'
     '[TOOL_RESULTS] {"content": {"temp": 20}}[/TOOL_RESULTS]'),
    ("tools-print-as-json", "{{ range .Messages }}{{ end }}{{ .Tools }}", {"tools": [WEATHER]}, WEATHER_JSON),
    ("tool-prints-as-json", "{{ range .Messages }}{{ end }}{{ range .Tools }}{{ . }}{{ end }}", {"tools": [WEATHER]}, WEATHER_JSON[1:-1]),
    ("tool-fields", "{{ range .Messages }}{{ end }}{{ range .Tools }}{{ .Type }} {{ .Function.Name }}: {{ .Function.Description }}"
     " req={{ .Function.Parameters.Required }}{{ end }}", {"tools": [WEATHER]}, "function get_weather: Get the weather req=[location]"),
    ("tool-properties-sorted", "{{ range .Messages }}{{ end }}{{ range .Tools }}{{ range $k, $v := .Function.Parameters.Properties }}"
     "{{ $k }}:{{ $v.Type }}:{{ $v.Description }}:{{ $v.Enum }};{{ end }}{{ end }}", {"tools": [WEATHER]},
     "location:string:City:[];unit:string::[c f];"),
    ("tool-properties-json", "{{ range .Messages }}{{ end }}{{ range .Tools }}{{ .Function.Parameters.Properties }}{{ end }}",
     {"tools": [WEATHER]}, '{"location":{"type":"string","description":"City"},"unit":{"type":"string","enum":["c","f"]}}'),
    ("typescript-types", "{{ range .Messages }}{{ end }}{{ range .Tools }}{{ range $k, $v := .Function.Parameters.Properties }}"
     "{{ $k }}: {{ toTypeScriptType $v }}; {{ end }}{{ end }}",
     {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
         "n": {"type": ["integer", "null"]}, "tags": {"type": "array"}}}}}]}, "n: number | null; tags: any[]; "),
    ("no-tools-is-falsy", "{{ range .Messages }}{{ end }}{{ if .Tools }}tools{{ else }}none{{ end }}", {}, "none"),
    ("tool-call-arguments-json", "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Name }}({{ .Function.Arguments }}){{ end }}{{ end }}",
     {"messages": [CALL]}, 'get_weather({"location":"Paris","unit":"c"})'),
    ("tool-call-arguments-as-json-string", "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Arguments.city }}{{ end }}{{ end }}",
     {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"city": "Oslo"}'}}]}]}, "Oslo"),
    ("tool-call-range-arguments", "{{ range .Messages }}{{ range .ToolCalls }}{{ range $k, $v := .Function.Arguments }}{{ $k }}={{ $v }},"
     "{{ end }}{{ end }}{{ end }}", {"messages": [CALL]}, "location=Paris,unit=c,"),
    ("tool-message-fields", "{{ range .Messages }}{{ if eq .Role \"tool\" }}{{ .ToolName }}:{{ .Content }}{{ end }}{{ end }}",
     {"messages": [{"role": "tool", "content": "sunny", "tool_name": "get_weather"}]}, "get_weather:sunny"),
    ("original-keys-also-work", "{{ range .Messages }}{{ .role }}/{{ .content }}{{ end }}",
     {"messages": [{"role": "user", "content": "hi"}]}, "user/hi"),
    ("thinking-field", "{{ range .Messages }}{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}{{ end }}",
     {"messages": [{"role": "assistant", "content": "4", "thinking": "2+2"}]}, "<think>2+2</think>4"),
]


@pytest.mark.parametrize(("src", "kwargs", "expected"), [c[1:] for c in TOOL_CASES], ids=[c[0] for c in TOOL_CASES])
def test_render_prompt_tools(src: str, kwargs: dict, expected: str) -> None:
    kwargs.setdefault("messages", [])
    assert render_prompt(src, **kwargs) == expected


def test_command_r_tool_call_matches_ollama_testdata() -> None:
    # Excerpt of Ollama's command-r template; expected text from template/testdata/command-r.gotmpl/tools-single-call.
    src = (
        "{{- range .Messages }}<|START_OF_TURN_TOKEN|>\n"
        '{{- if eq .Role "assistant" }}<|CHATBOT_TOKEN|>\n'
        "{{- if .Content }}{{ .Content }}\n"
        "{{- else if .ToolCalls }}\nAction: ```json\n[\n"
        "{{- range .ToolCalls }}\n    {\n"
        '        "tool_name": "{{ .Function.Name }}",\n'
        '        "parameters": {{ .Function.Arguments }}\n    }\n'
        "{{- end }}\n]```\n{{- end }}\n{{- end }}<|END_OF_TURN_TOKEN|>\n"
        "{{- end }}<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>\n"
    )
    call = {"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"location": "San Francisco, CA"}}}]}
    assert render_prompt(src, messages=[call]) == (
        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>\nAction: ```json\n[\n    {\n"
        '        "tool_name": "get_weather",\n        "parameters": {"location":"San Francisco, CA"}\n    }\n'
        "]```<|END_OF_TURN_TOKEN|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>\n"
    )
