"""The shell's command language: lexing, parsing, errors, wildcards and evaluation."""

from __future__ import annotations

import enum
import operator
import pickle
import string
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popgate.shell._language import (
    ArrayLiteral,
    BinaryOp,
    Command,
    EvaluationError,
    Expression,
    HashLiteral,
    Literal,
    Parameter,
    ParseError,
    Pipeline,
    Script,
    ScriptBlock,
    SubExpression,
    UnaryOp,
    Variable,
    compare,
    evaluate,
    has_wildcards,
    is_true,
    needs_more_input,
    parse,
    source_lines,
    wildcard_match,
)

# --- helpers -------------------------------------------------------------------------------


def only_command(text: str) -> Command:
    """The single command of a one-statement, one-command script."""
    script = parse(text)
    assert len(script.statements) == 1
    (command,) = script.statements[0].commands
    return command


def elements(text: str) -> tuple[Parameter | Expression, ...]:
    return only_command(text).elements


def only_value(text: str) -> Expression:
    """The single argument of ``Cmd <text>``."""
    (element,) = elements(f"Cmd {text}")
    assert not isinstance(element, Parameter)
    return element


def block_body(source: str) -> Expression:
    """The body of ``Where-Object {<source>}``."""
    block = only_value("{" + source + "}")
    assert isinstance(block, ScriptBlock)
    return block.body


def parse_error(text: str) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse(text)
    return caught.value


def get_property(target: object, name: str) -> object:
    """Case-insensitive keys of a mapping or attributes of an object, else None."""
    wanted = name.casefold()
    if isinstance(target, Mapping):
        return next((v for k, v in target.items() if str(k).casefold() == wanted), None)
    attributes = getattr(target, "__dict__", {})
    return next((v for k, v in attributes.items() if k.casefold() == wanted), None)


def run(source: str, variables: Mapping[str, object] | None = None) -> object:
    """Evaluate the expression ``source`` as Where-Object would."""
    return evaluate(block_body(source), variables or {}, get_property)


def word(value: str) -> Literal:
    return Literal(value, quoted=False)


def text(value: str) -> Literal:
    return Literal(value, quoted=True)


class Service:
    """An object whose properties are attributes (get_property reads them)."""

    def __init__(self, **properties: object) -> None:
        self.__dict__.update(properties)


class ServiceStatus(enum.Enum):
    Stopped = 1
    Running = 4


class Mode(enum.StrEnum):
    Plain = "Plain"
    Tls = "SSL"


# --- statements and pipelines --------------------------------------------------------------


def test_command_name_and_elements() -> None:
    command = only_command("Start-service MSExchangePOP3")
    assert command.name == "Start-service"  # case kept as typed
    assert command.elements == (word("MSExchangePOP3"),)
    assert command.text == "Start-service MSExchangePOP3"


@pytest.mark.parametrize("name", ["Get-Service", "fl", "Net", "Where-Object", "?", "%", "ft"])
def test_command_names(name: str) -> None:
    assert only_command(f"{name} x").name == name


def test_statements_split_on_semicolons_and_newlines_blank_ones_ignored() -> None:
    script = parse(";; Get-Service ;\n\n  Net Start MSExchangePOP3\r\nfl ;")
    assert [p.commands[0].name for p in script.statements] == ["Get-Service", "Net", "fl"]
    assert script.statements[1].commands[0].elements == (word("Start"), word("MSExchangePOP3"))


@pytest.mark.parametrize("source", ["", "   ", "\n\n", "# only a comment", ";;", "<# block #>"])
def test_empty_scripts(source: str) -> None:
    assert parse(source) == Script(())


def test_pipeline_of_commands() -> None:
    script = parse("Get-Service *POP* | Where-Object { $_.Status -eq 'Running' } | fl Name")
    (pipeline,) = script.statements
    assert [c.name for c in pipeline.commands] == ["Get-Service", "Where-Object", "fl"]
    assert pipeline.commands[2].elements == (word("Name"),)


def test_newlines_after_a_pipe_continue_the_pipeline() -> None:
    (pipeline,) = parse("Get-Service |\n\n   Format-List").statements
    assert [c.name for c in pipeline.commands] == ["Get-Service", "Format-List"]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_backtick_continues_a_line(newline: str) -> None:
    command = only_command(f"Get-Service `{newline}  -Name MSExchangePOP3")
    assert command.elements == (Parameter("Name"), word("MSExchangePOP3"))
    assert command.elements[0].line == 2


def test_backtick_before_a_space_is_blank_and_inside_a_word_escapes() -> None:
    assert elements("Cmd ` a") == (word("a"),)
    assert elements(r"Cmd C:\Program` Files") == (word(r"C:\Program Files"),)
    assert elements("Cmd a`nb `$x") == (word("a\nb"), word("$x"))


def test_comments() -> None:
    assert elements("Cmd a # the rest is ignored | fl") == (word("a"),)
    assert elements("Cmd a#b") == (word("a#b"),)  # only at the start of a token
    assert elements("Cmd <# inline\nblock #> a") == (word("a"),)


def test_positions_are_one_based_and_follow_lines() -> None:
    script = parse("Get-Service\r\n  Get-Item -Path  'x' | fl")
    first, second = script.statements
    assert (first.line, first.column) == (1, 1)
    assert (second.line, second.column) == (2, 3)
    item, fl = second.commands
    parameter, value = item.elements
    assert (parameter.line, parameter.column) == (2, 12)
    assert (value.line, value.column) == (2, 19)
    assert (fl.line, fl.column) == (2, 25)
    assert item.text == "Get-Item -Path  'x'"


def test_positions_do_not_take_part_in_equality() -> None:
    assert Literal("a", True, 1, 5) == Literal("a", True, 9, 9)
    assert Command("a", (), 1, 1, "a") == Command("a")


def test_call_operator_runs_a_quoted_name() -> None:
    command = only_command("& 'Get-Service' -Name x")
    assert command.name == "Get-Service"
    assert command.text == "& 'Get-Service' -Name x"
    assert (command.line, command.column) == (1, 1)


# --- parameters ----------------------------------------------------------------------------


def test_parameters_keep_their_case_without_the_dash() -> None:
    assert elements("Get-Service -name a -DisplayName b") == (
        Parameter("name"),
        word("a"),
        Parameter("DisplayName"),
        word("b"),
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("-Confirm:$false", Parameter("Confirm", Literal(False))),
        ("-Name:MSExchangePOP3", Parameter("Name", word("MSExchangePOP3"))),
        ("-Name: MSExchangePOP3", Parameter("Name", word("MSExchangePOP3"))),
        ("-Name:a,b", Parameter("Name", ArrayLiteral((word("a"), word("b"))))),
        ("-Path:C:\\x", Parameter("Path", word("C:\\x"))),
        ("-Timeout:'00:30:00'", Parameter("Timeout", text("00:30:00"))),
    ],
)
def test_colon_form_carries_the_value(source: str, expected: Parameter) -> None:
    assert elements(f"Cmd {source}") == (expected,)


def test_dash_forms_that_are_not_parameters() -> None:
    assert elements("Cmd -1 - -- -5MB") == (
        Literal(-1),
        word("-"),
        word("--"),
        Literal(-5 * 1024**2),
    )


def test_typographic_dashes_and_help_parameter() -> None:
    assert elements("Cmd \u2013Name \u2014Force -?") == (
        Parameter("Name"),
        Parameter("Force"),
        Parameter("?"),
    )


# --- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("MSExchangePOP3", "MSExchangePOP3"),
        ("*POP*", "*POP*"),
        ("Start", "Start"),
        ("mail.contoso.com:995:SSL", "mail.contoso.com:995:SSL"),
        ("0.0.0.0:110", "0.0.0.0:110"),
        ("[::]:995", "[::]:995"),
        ("00:30:00", "00:30:00"),
        ("1.00:00:00", "1.00:00:00"),
        ("10.0.0.1", "10.0.0.1"),
        ("user@contoso.com", "user@contoso.com"),
        ("C:\\Logs\\POP3", "C:\\Logs\\POP3"),
        ("[ab]*", "[ab]*"),
        ("a=b", "a=b"),
        ("a'b c'd", "ab cd"),
        ('x"y z"', "xy z"),
        ("5abc", "5abc"),
        ("$", "$"),
    ],
)
def test_barewords_are_strings(source: str, expected: str) -> None:
    assert only_value(source) == word(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("5", 5),
        ("0", 0),
        ("-1", -1),
        ("+7", 7),
        ("007", 7),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("10KB", 10 * 1024),
        ("10MB", 10 * 1024**2),
        ("10mb", 10 * 1024**2),
        ("2GB", 2 * 1024**3),
        ("1TB", 1024**4),
        ("1.5KB", 1536.0),
        ("0x10", 16),
        ("0xFF", 255),
        ("0x10KB", 16 * 1024),
        ("5l", 5),
        ("2d", 2.0),
    ],
)
def test_numbers(source: str, expected: int | float) -> None:
    value = only_value(source)
    assert isinstance(value, Literal)
    assert value.value == expected
    assert type(value.value) is type(expected)
    assert value.quoted is False


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'plain'", "plain"),
        ("'it''s'", "it's"),
        ("''", ""),
        ("'no `n escapes or $expansion'", "no `n escapes or $expansion"),
        ("'two\nlines'", "two\nlines"),
        ("'a | b ; c'", "a | b ; c"),
        ("\u2018smart\u2019", "smart"),
        ('"plain"', "plain"),
        ('"tab`there"', "tab\there"),
        ('"new`nline"', "new\nline"),
        ('"say `"hi`""', 'say "hi"'),
        ('"say ""hi"""', 'say "hi"'),
        ('"back``tick"', "back`tick"),
        ('"cost: $5 and `$x"', "cost: $5 and $x"),
        ('"$"', "$"),
        ('"null`0"', "null\0"),
        ("\u201csmart\u201d", "smart"),
    ],
)
def test_quoted_strings(source: str, expected: str) -> None:
    assert only_value(source) == text(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("$true", Literal(True)),
        ("$TRUE", Literal(True)),
        ("$false", Literal(False)),
        ("$null", Literal(None)),
        ("$_", Variable("_")),
        ("$PSItem", Variable("PSItem")),
        ("$_.Status", Variable("_", ("Status",))),
        ("$_.A.B_2", Variable("_", ("A", "B_2"))),
        ("$_.'Display Name'", Variable("_", ("Display Name",))),
        ("${a b}", Variable("a b")),
        ("$env:USERNAME", Variable("env:USERNAME")),
        ("$?", Variable("?")),
    ],
)
def test_variables_and_constants(source: str, expected: Expression) -> None:
    assert only_value(source) == expected


@pytest.mark.parametrize("source", ["a,b,c", "a, b, c", "a ,b , c", "a,\n  b,\n  c"])
def test_commas_make_one_array_argument(source: str) -> None:
    assert elements(f"Cmd {source} -Next") == (
        ArrayLiteral((word("a"), word("b"), word("c"))),
        Parameter("Next"),
    )


def test_arrays_mix_kinds() -> None:
    assert only_value("'a',1,$true,b") == ArrayLiteral(
        (text("a"), Literal(1), Literal(True), word("b"))
    )


def test_hash_literals() -> None:
    assert only_value("@{Add='a','b'; Remove='c'}") == HashLiteral(
        (
            ("Add", ArrayLiteral((text("a"), text("b")))),
            ("Remove", text("c")),
        )
    )


def test_hash_literal_entries_on_lines_with_quoted_keys() -> None:
    value = only_value("@{\n  'Display Name' = 'POP3'\n  Port = 995\n  Nested = @{A = $true}\n}")
    assert value == HashLiteral(
        (
            ("Display Name", text("POP3")),
            ("Port", Literal(995)),
            ("Nested", HashLiteral((("A", Literal(True)),))),
        )
    )


def test_empty_hash_and_command_values() -> None:
    assert only_value("@{}") == HashLiteral(())
    value = only_value("@{When=Get-Date -Format o}")
    assert value == HashLiteral(
        (
            (
                "When",
                SubExpression(Pipeline((Command("Get-Date", (Parameter("Format"), word("o"))),))),
            ),
        )
    )


def test_parenthesised_command_is_a_nested_pipeline() -> None:
    value = only_value("(ConvertTo-SecureString -String 'x' -AsPlainText -Force)")
    assert isinstance(value, SubExpression)
    (command,) = value.pipeline.commands
    assert command.name == "ConvertTo-SecureString"
    assert command.elements == (
        Parameter("String"),
        text("x"),
        Parameter("AsPlainText"),
        Parameter("Force"),
    )
    assert (value.line, value.column) == (1, 5)


def test_parenthesised_pipeline_and_expression() -> None:
    value = only_value("(Get-Service | fl)")
    assert isinstance(value, SubExpression)
    assert [c.name for c in value.pipeline.commands] == ["Get-Service", "fl"]
    assert only_value("(1 -eq 1)") == BinaryOp("eq", Literal(1), Literal(1))
    assert only_value("(\n  'a'\n)") == text("a")


def test_dollar_subexpressions() -> None:
    assert only_value("$(Get-Date)") == SubExpression(Pipeline((Command("Get-Date"),)))
    assert only_value("$('a')") == text("a")
    assert only_value("$()") == Literal(None)
    assert only_value("$(a; 'b')") == ArrayLiteral(
        (SubExpression(Pipeline((Command("a"),))), text("b"))
    )


def test_array_subexpressions() -> None:
    assert only_value("@(1, 2)") == ArrayLiteral((Literal(1), Literal(2)))
    assert only_value("@('a')") == ArrayLiteral((text("a"),))
    assert only_value("@()") == ArrayLiteral(())
    assert only_value("@(1\n2; 3)") == ArrayLiteral((Literal(1), Literal(2), Literal(3)))
    assert only_value("@(Get-Service)") == SubExpression(Pipeline((Command("Get-Service"),)))


def test_script_blocks() -> None:
    block = only_value("{ $_.Status -eq 'Running' }")
    assert block == ScriptBlock(
        BinaryOp("eq", Variable("_", ("Status",)), text("Running")),
        " $_.Status -eq 'Running' ",
    )
    assert (block.line, block.column) == (1, 5)
    assert only_value("{}") == ScriptBlock(Literal(None), "")
    assert only_value("{\n  $_.Name\n}") == ScriptBlock(Variable("_", ("Name",)), "\n  $_.Name\n")
    assert only_value("{ Get-Service }") == ScriptBlock(
        SubExpression(Pipeline((Command("Get-Service"),))), " Get-Service "
    )


def test_where_object_with_a_filter_block() -> None:
    (pipeline,) = parse("Get-Service | ? {$_.Name -like '*POP*'}").statements
    where = pipeline.commands[1]
    assert where.name == "?"
    body = BinaryOp("like", Variable("_", ("Name",)), text("*POP*"))
    assert where.elements == (ScriptBlock(body, "$_.Name -like '*POP*'"),)


# --- expressions ---------------------------------------------------------------------------

COMPARISONS = [
    "eq",
    "ne",
    "gt",
    "ge",
    "lt",
    "le",
    "like",
    "notlike",
    "match",
    "notmatch",
    "contains",
    "notcontains",
    "in",
    "notin",
]


@pytest.mark.parametrize("name", [*COMPARISONS, *("c" + n for n in COMPARISONS), "ieq", "ilike"])
def test_comparison_operators(name: str) -> None:
    assert block_body(f"$_.A -{name} 'x'") == BinaryOp(name, Variable("_", ("A",)), text("x"))


def test_operators_are_lower_cased_and_need_no_spaces() -> None:
    assert block_body("$_.A -EQ 1") == BinaryOp("eq", Variable("_", ("A",)), Literal(1))
    assert block_body("$a-eq'b'") == BinaryOp("eq", Variable("a"), text("b"))
    assert block_body("$_.A -eq -1") == BinaryOp("eq", Variable("_", ("A",)), Literal(-1))


def test_not_binds_tighter_than_comparisons() -> None:
    assert block_body("-not $a -eq $b") == BinaryOp(
        "eq", UnaryOp("not", Variable("a")), Variable("b")
    )
    assert block_body("!$a") == UnaryOp("not", Variable("a"))
    assert block_body("-not -not $a") == UnaryOp("not", UnaryOp("not", Variable("a")))
    assert block_body("$a -eq -not $b") == BinaryOp(
        "eq", Variable("a"), UnaryOp("not", Variable("b"))
    )


def test_and_or_share_one_level_left_to_right() -> None:
    a, b, c = Variable("a"), Variable("b"), Variable("c")
    assert block_body("$a -or $b -and $c") == BinaryOp("and", BinaryOp("or", a, b), c)
    assert block_body("$a -and $b -or $c") == BinaryOp("or", BinaryOp("and", a, b), c)
    assert block_body("$a -xor $b") == BinaryOp("xor", a, b)


def test_comparisons_bind_tighter_than_logic_and_parentheses_group() -> None:
    status = BinaryOp("eq", Variable("_", ("Status",)), text("Running"))
    name = BinaryOp("like", Variable("_", ("Name",)), text("*POP*"))
    assert block_body("$_.Status -eq 'Running' -and $_.Name -like '*POP*'") == BinaryOp(
        "and", status, name
    )
    assert block_body("-not ($_.Status -eq 'Running')") == UnaryOp("not", status)
    assert block_body("$a -or ($b -and $c)") == BinaryOp(
        "or", Variable("a"), BinaryOp("and", Variable("b"), Variable("c"))
    )


def test_commas_bind_tighter_than_comparisons() -> None:
    assert block_body("$_.Status -in 'Running', 'Stopped'") == BinaryOp(
        "in", Variable("_", ("Status",)), ArrayLiteral((text("Running"), text("Stopped")))
    )
    assert block_body("1,2 -contains 2") == BinaryOp(
        "contains", ArrayLiteral((Literal(1), Literal(2))), Literal(2)
    )


def test_comparisons_chain_left_to_right_and_lines_continue_after_operators() -> None:
    assert block_body("1 -eq 1 -eq $true") == BinaryOp(
        "eq", BinaryOp("eq", Literal(1), Literal(1)), Literal(True)
    )
    assert block_body("$a -eq\n  1 -and\n  $b") == BinaryOp(
        "and", BinaryOp("eq", Variable("a"), Literal(1)), Variable("b")
    )


def test_expression_positions() -> None:
    body = block_body("$a -eq 1")
    assert isinstance(body, BinaryOp)
    assert (body.line, body.column) == (1, 6)  # where its text starts: "Cmd {$a"
    assert (body.right.line, body.right.column) == (1, 13)


# --- parse errors --------------------------------------------------------------------------

ERRORS = [
    # source, error id, message, column, incomplete
    (
        "Get-Service 'abc",
        "TerminatorExpectedAtEndOfString",
        "The string is missing the terminator: '.",
        13,
        True,
    ),
    (
        'Get-Service "abc',
        "TerminatorExpectedAtEndOfString",
        'The string is missing the terminator: ".',
        13,
        True,
    ),
    (
        "Get-Service | Where-Object { $_.Status -eq ",
        "MissingEndCurlyBrace",
        "Missing closing '}' in statement block or type definition.",
        28,
        True,
    ),
    ("Get-Service |", "EmptyPipeElement", "An empty pipe element is not allowed.", 14, True),
    ("| Get-Service", "EmptyPipeElement", "An empty pipe element is not allowed.", 1, False),
    ("Get-Service | | fl", "EmptyPipeElement", "An empty pipe element is not allowed.", 14, False),
    ("Get-Service | ; fl", "EmptyPipeElement", "An empty pipe element is not allowed.", 14, False),
    (
        "Where-Object { $_.Status -eq }",
        "ExpectedValueExpression",
        "You must provide a value expression following the '-eq' operator.",
        29,
        False,
    ),
    (
        "Where-Object { $_.Status -eq Running }",
        "ExpectedValueExpression",
        "You must provide a value expression following the '-eq' operator.",
        29,
        False,
    ),
    (
        "Where-Object { -not }",
        "MissingExpressionAfterOperator",
        "Missing expression after unary operator '-not'.",
        20,
        False,
    ),
    (
        "Set-PopSettings -Bindings @{Add=}",
        "MissingStatementInHashLiteral",
        "Missing statement after '=' in hash literal.",
        33,
        False,
    ),
    (
        "Get-Service @{Add='a'",
        "IncompleteHashLiteral",
        "The hash literal was incomplete.",
        22,
        True,
    ),
    (
        "Get-Service @{Add 'a'}",
        "MissingEqualsInHashLiteral",
        "Missing '=' operator after key in hash literal.",
        18,
        False,
    ),
    (
        "Get-Service @{='a'}",
        "MissingKeyInHashLiteral",
        "Missing key before '=' in hash literal.",
        15,
        False,
    ),
    (
        "Get-Service @{a=1; A=2}",
        "DuplicateKeyInHashLiteral",
        "Duplicate keys 'A' are not allowed in hash literals.",
        20,
        False,
    ),
    (
        "Get-Service )",
        "UnexpectedToken",
        "Unexpected token ')' in expression or statement.",
        13,
        False,
    ),
    (
        "Get-Service }",
        "UnexpectedToken",
        "Unexpected token '}' in expression or statement.",
        13,
        False,
    ),
    (
        "Where-Object { 1 2 }",
        "UnexpectedToken",
        "Unexpected token '2' in expression or statement.",
        18,
        False,
    ),
    (
        "Get-Service (Get-Item",
        "MissingEndParenthesisInExpression",
        "Missing closing ')' in expression.",
        22,
        True,
    ),
    (
        "Get-Service (1 2)",
        "MissingEndParenthesisInExpression",
        "Missing closing ')' in expression.",
        15,
        False,
    ),
    (
        "Get-Service ()",
        "ExpectedExpression",
        "An expression was expected after '('.",
        14,
        False,
    ),
    (
        "Get-Service $(Get-Item",
        "MissingEndParenthesisInSubexpression",
        "Missing closing ')' in subexpression.",
        23,
        True,
    ),
    (
        "Get-Service @(1 }",
        "MissingEndParenthesisInSubexpression",
        "Missing closing ')' in subexpression.",
        17,
        False,
    ),
    ("Get-Service `", "IncompleteString", "Incomplete string token.", 14, True),
    (
        "Get-Service <# note",
        "MissingTerminatorMultiLineComment",
        "The terminator '#>' is missing from the multiline comment.",
        13,
        True,
    ),
    (
        "Get-Service a,",
        "MissingExpression",
        "Missing expression after ',' in pipeline element.",
        15,
        True,
    ),
    (
        "Get-Service a, | fl",
        "MissingExpression",
        "Missing expression after ',' in pipeline element.",
        15,
        False,
    ),
    (
        "Where-Object { 1, }",
        "MissingExpressionAfterToken",
        "Missing expression after ','.",
        18,
        False,
    ),
    (
        "Get-Service -Name:",
        "ParameterRequiresArgument",
        "Parameter -Name: requires an argument.",
        19,
        False,
    ),
    (
        "Get-Service && fl",
        "InvalidEndOfLine",
        "The token '&&' is not a valid statement separator in this version.",
        13,
        False,
    ),
    (
        "Get-Service || fl",
        "InvalidEndOfLine",
        "The token '||' is not a valid statement separator in this version.",
        13,
        False,
    ),
    (
        "Get-Service a & b",
        "AmpersandNotAllowed",
        "The ampersand (&) character is not allowed. The & operator is reserved for future use; "
        'wrap an ampersand in double quotation marks ("&") to pass it as part of a string.',
        15,
        False,
    ),
    (
        "Get-Service < in.txt",
        "RedirectionNotSupported",
        "The '<' operator is reserved for future use.",
        13,
        False,
    ),
    ("Get-Service @", "UnrecognizedToken", "Unrecognized token in source text.", 13, False),
    (
        "Get-Service | 'abc'",
        "ExpressionsMustBeFirstInPipeline",
        "Expressions are only allowed as the first element of a pipeline.",
        15,
        False,
    ),
    (
        "Where-Object { 1 -eq $ }",
        "InvalidVariableReference",
        "Variable reference is not valid. '$' was not followed by a valid variable name "
        "character. Consider using ${} to delimit the name.",
        22,
        False,
    ),
    (
        "Get-Service ${name",
        "EndBraceExpectedAtEndOfVariableName",
        "Missing } at end of variable name.",
        13,
        True,
    ),
    (
        "Get-Service ${}",
        "EmptyVariableReference",
        "An empty ${} variable reference was found. A name is required inside the braces.",
        13,
        False,
    ),
]


@pytest.mark.parametrize(("source", "error_id", "message", "column", "incomplete"), ERRORS)
def test_parse_errors(
    source: str, error_id: str, message: str, column: int, incomplete: bool
) -> None:
    error = parse_error(source)
    assert (error.error_id, error.message, error.line, error.column) == (
        error_id,
        message,
        1,
        column,
    )
    assert error.source_line == source
    assert error.incomplete is incomplete
    assert str(error) == message


UNSUPPORTED = [
    # valid PowerShell the shell does not run: source, column
    ("$services = Get-Service", 11),  # assignment
    ("1 -eq 1", 1),  # an expression as a statement
    ("'MSExchangePOP3' | Get-Service", 1),  # an expression starting a pipeline
    ("Get-Service > out.txt", 13),
    ("Get-Service 2> err.txt", 13),
    ("Get-Service @params", 13),
    ("Get-Service @'\nhere\n'@", 13),
    ("Where-Object { $_.Name.ToUpper() }", 31),
    ("Where-Object { $_.Bindings[0] }", 27),
    ("Where-Object { $a -replace 'x' }", 19),
    ("Where-Object { $a + 1 }", 19),
    ("Where-Object { [int]$a }", 16),
    ("Where-Object { $a; $b }", 20),
    ("Get-Service (Get-Item).Name", 23),
    ("Get-Service $name-suffix", 18),
    ("& { Get-Service }", 3),
    ("Where-Object { @{$a=1} }", 18),
]


@pytest.mark.parametrize(("source", "column"), UNSUPPORTED)
def test_valid_powershell_this_shell_does_not_run(source: str, column: int) -> None:
    error = parse_error(source)
    assert (error.error_id, error.column) == ("UnsupportedSyntax", column)
    assert "not supported in this shell" in error.message


def test_errors_on_later_lines_show_that_line() -> None:
    error = parse_error("Get-Service\r\nGet-Service | Where-Object { $_.Status -eq")
    assert (error.line, error.column) == (2, 28)
    assert error.source_line == "Get-Service | Where-Object { $_.Status -eq"
    error = parse_error("a\nb\n  c )\nd")
    assert (error.line, error.column, error.source_line) == (3, 5, "  c )")


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("", [""]),
        ("a", ["a"]),
        ("a\r\nb\rc\nd", ["a", "b", "c", "d"]),
        ("a\n", ["a", ""]),
        ("a\x1eb\u2028c\fd", ["a\x1eb\u2028c\fd"]),  # not line breaks to PowerShell
    ],
)
def test_source_lines_number_lines_as_the_parser_does(source: str, lines: list[str]) -> None:
    assert source_lines(source) == lines


def test_line_numbers_ignore_characters_splitlines_would_break_at() -> None:
    script = parse("a\x1e\u2028b\nc")
    assert [p.line for p in script.statements] == [1, 2]
    assert only_command("a\x1e\u2028b").elements == (word("b"),)  # blanks, not breaks


def test_an_unterminated_string_inside_a_block_reports_the_string() -> None:
    error = parse_error("? { $_.Name -like '*POP*")
    assert (error.error_id, error.column, error.incomplete) == (
        "TerminatorExpectedAtEndOfString",
        19,
        True,
    )


def test_parse_errors_pickle() -> None:
    error = parse_error("Get-Service |")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert (copy.message, copy.line, copy.column, copy.error_id, copy.source_line) == (
        error.message,
        error.line,
        error.column,
        error.error_id,
        error.source_line,
    )
    assert copy.incomplete is True


def test_nesting_has_a_limit() -> None:
    error = parse_error("Cmd " + "(" * 200)
    assert error.error_id == "ScriptTooComplicated"
    assert error.message == "Processing was stopped because the script is too complex."
    assert only_value("(" * 30 + "1" + ")" * 30) == Literal(1)


@pytest.mark.parametrize(
    "source",
    ["Cmd {" + "!" * 5000 + "$a}", "Cmd {" + " -and ".join(["$a"] * 5000) + "}"],
)
def test_expressions_too_deep_to_evaluate_are_rejected(source: str) -> None:
    assert parse_error(source).error_id == "ScriptTooComplicated"


def test_deep_but_reasonable_expressions_evaluate() -> None:
    body = block_body(" -and ".join(["$true"] * 100))
    assert evaluate(body, {}, get_property) is True


# --- needs_more_input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "Get-Service 'abc",
        'Get-Service "abc',
        "Get-Service 'it''",
        "Get-Service | Where-Object {",
        "Get-Service | Where-Object { $_.Name -like '*POP*",
        "Get-Service | Where-Object { $_.Status -eq",
        "Get-Service | Where-Object { -not",
        "Get-Service | Where-Object { $_.Status -eq 'Running' -and",
        "Get-Service (Get-Item",
        "Get-Service (",
        "Get-Service @{Add='a'",
        "Get-Service @{Add=",
        "Get-Service @{",
        "Get-Service @(1,",
        "Get-Service $(",
        "Get-Service |",
        "Get-Service |  # more to come",
        "Get-Service |\n",
        "Get-Service `",
        "Get-Service -Name a,",
        "Get-Service <# a comment",
        "Get-Service ${name",
        "a\nb |",
    ],
)
def test_needs_more_input(source: str) -> None:
    assert needs_more_input(source) is True


@pytest.mark.parametrize(
    "source",
    [
        "",
        "Get-Service",
        "Get-Service 'abc'",
        "Get-Service `\n",
        "Get-Service |\n| fl",
        "| Get-Service",
        "Get-Service )",
        "Get-Service }",
        "Get-Service ) 'abc",
        "Where-Object { $_.Status -eq }",
        "Set-PopSettings -Bindings @{Add=}",
        "Get-Service -Name:",
        "Get-Service && fl",
        "$x =",
    ],
)
def test_complete_or_wrong_input_needs_no_more(source: str) -> None:
    assert needs_more_input(source) is False


@pytest.mark.parametrize(
    ("first", "rest"),
    [
        ("Get-Service |", "Format-List"),
        ("Get-Service | Where-Object {", "$_.Status -eq 'Running' }"),
        ("Get-Service | Where-Object { $_.Status -eq", "'Running' }"),
        ("Get-Service `", "-Name MSExchangePOP3"),
        ("Get-Service 'MSExchange", "POP3'"),
        ("Get-Service -Name a,", "b"),
        ("Set-PopSettings -Bindings @{Add='a'", "Remove='b'}"),
        ("Get-Service (Get-Item", ")"),
    ],
)
def test_more_input_completes_the_statement(first: str, rest: str) -> None:
    assert needs_more_input(first)
    combined = f"{first}\n{rest}"
    assert not needs_more_input(combined)
    assert len(parse(combined).statements) == 1


# --- wildcards -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*POP*", "MSExchangePOP3", True),
        ("*pop*", "MSExchangePOP3", True),
        ("MSExchangePOP3*", "MSExchangePOP3BE", True),
        ("MSExchangePOP3*", "MSExchangePOP3", True),
        ("MSExchangePOP3", "MSExchangePOP3BE", False),
        ("msexchangepop3", "MSExchangePOP3", True),
        ("*IMAP*", "MSExchangePOP3", False),
        ("[ab]c", "ac", True),
        ("[ab]c", "bc", True),
        ("[ab]c", "Ac", True),
        ("[ab]c", "cc", False),
        ("[ab]c", "abc", False),
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        ("[-a]", "-", True),
        ("[`]]x", "]x", True),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a`*", "a*", True),
        ("a`*", "ab", False),
        ("a`?", "a?", True),
        ("`[ab`]", "[ab]", True),
        ("`[ab`]", "a", False),
        ("*", "", True),
        ("", "", True),
        ("", "a", False),
        ("a*b*c", "aXXbYYc", True),
        ("*.contoso.com", "mail.CONTOSO.com", True),
        ("a.b", "aXb", False),
        ("(x)+", "(x)+", True),
        ("a*", "a\nb", True),
        ("[abc", "[abc", True),
    ],
)
def test_wildcard_match(pattern: str, value: str, expected: bool) -> None:
    assert wildcard_match(pattern, value) is expected


def test_wildcard_match_can_respect_case() -> None:
    assert wildcard_match("*POP*", "MSExchangePOP3", case_sensitive=True)
    assert not wildcard_match("*pop*", "MSExchangePOP3", case_sensitive=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("MSExchangePOP3", False),
        ("", False),
        ("*POP*", True),
        ("POP?", True),
        ("[ab]", True),
        ("a]", True),
        ("a`*", False),
        ("`[a`]", False),
        ("a``*", True),
    ],
)
def test_has_wildcards(value: str, expected: bool) -> None:
    assert has_wildcards(value) is expected


# --- evaluation ----------------------------------------------------------------------------

POP3 = {
    "Status": "Running",
    "Name": "MSExchangePOP3",
    "Count": 5,
    "Bindings": ["0.0.0.0:110", "[::]:110"],
    "Missing": None,
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("$_.Status -eq 'Running'", True),
        ("$_.status -eq 'RUNNING'", True),
        ("$_.Status -ieq 'running'", True),
        ("$_.Status -ceq 'running'", False),
        ("$_.Status -ceq 'Running'", True),
        ("$_.Status -ne 'Stopped'", True),
        ("$_.Status -cne 'running'", True),
        ("$_.Name -like '*pop*'", True),
        ("$_.Name -clike '*pop*'", False),
        ("$_.Name -notlike 'MSExchangeIMAP*'", True),
        ("$_.Name -match 'pop\\d$'", True),
        ("$_.Name -cmatch 'pop'", False),
        ("$_.Name -notmatch '^imap'", True),
        ("$_.Name -match '(?<kind>POP)'", True),
        ("$_.Bindings -contains '[::]:110'", True),
        ("$_.Bindings -notcontains '0.0.0.0:995'", True),
        ("'Running' -in 'Running','Stopped'", True),
        ("'running' -cin 'Running','Stopped'", False),
        ("'x' -notin 'a','b'", True),
        ("'10' -gt 9", False),  # a string on the left compares as text
        ("10 -gt '9'", True),  # a number on the left converts the right side
        ("'10' -lt '9'", True),
        ("9 -lt '10'", True),
        ("$_.Count -ge 5", True),
        ("$_.Count -eq '5'", True),
        ("'5' -eq 5", True),
        ("10 -eq 'abc'", False),
        ("10 -ne 'abc'", True),
        ("10MB -eq '10MB'", True),
        ("0x10 -eq ' 16 '", True),
        ("1.5 -gt 1", True),
        ("'abc' -gt 'ABB'", True),
        ("'a' -lt 'B'", True),
        ("'a' -clt 'A'", True),
        ("'B' -cgt 'a'", True),
        ("$true -eq 'yes'", True),
        ("$true -eq 'False'", True),
        ("$false -eq ''", True),
        ("$false -eq 0", True),
        ("$true -gt $false", True),
        ("$null -eq $_.Missing", True),
        ("$_.Missing -eq $null", True),
        ("$_.Status -eq $null", False),
        ("$_.Status -ne $null", True),
        ("$false -eq $null", False),
        ("$null -lt 1", True),
        ("5 -gt $null", True),
        ("$null -like '*'", True),
        ("$_.Status -eq 'Running' -and $_.Name -like '*POP*'", True),
        ("$_.Status -eq 'Stopped' -or $_.Name -like '*POP*'", True),
        ("$_.Status -eq 'Stopped' -and $_.Name -like '*POP*'", False),
        ("-not ($_.Status -eq 'Running')", False),
        ("!$_.Missing", True),
        ("-not $_.Name", False),
        ("$true -xor $true", False),
        ("$true -or $false -and $false", False),  # left to right, not C precedence
        ("$_.Count", 5),
        ("$_.Unknown", None),
        ("$_.Status.Unknown", None),
        ("$undefined", None),
        ("$_.Bindings.Count", 2),
        ("1,2,3 -gt 1", [2, 3]),
        ("'a','b','A' -eq 'a'", ["a", "A"]),
        ("'pop3','imap4' -like 'p*'", ["pop3"]),
        ("@() -eq 1", []),
        ("'a','b'", ["a", "b"]),
        ("@{a=1; b='x'}", {"a": 1, "b": "x"}),
    ],
)
def test_evaluate(source: str, expected: object) -> None:
    assert run(source, {"_": POP3}) == expected


def test_evaluate_reads_properties_of_objects_and_nested_paths() -> None:
    service = Service(Status="Running", Config=Service(Port=995))
    assert run("$_.Status -eq 'Running'", {"_": service}) is True
    assert run("$_.Config.Port -eq 995", {"_": service}) is True
    assert run("$PSItem.config.port", {"PSItem": service}) == 995


def test_property_paths_call_get_property_step_by_step() -> None:
    calls: list[tuple[object, str]] = []
    inner = {"B": 1}
    outer = {"A": inner}

    def recording(target: object, name: str) -> object:
        calls.append((target, name))
        return get_property(target, name)

    assert evaluate(block_body("$_.A.B"), {"_": outer}, recording) == 1
    assert calls == [(outer, "A"), (inner, "B")]


def test_property_of_null_is_null_without_asking() -> None:
    def never(target: object, name: str) -> object:
        raise AssertionError("get_property called")

    assert evaluate(block_body("$_.A.B"), {"_": None}, never) is None


def test_members_of_arrays_are_enumerated() -> None:
    services = [{"Name": "MSExchangePOP3"}, {"Name": "MSExchangePOP3BE"}, {"Other": 1}]
    assert run("$_.Name", {"_": services}) == ["MSExchangePOP3", "MSExchangePOP3BE"]
    assert run("$_.Name", {"_": services[:1]}) == "MSExchangePOP3"
    assert run("$_.Nothing", {"_": services}) is None


def test_variable_names_are_case_insensitive() -> None:
    assert run("$Item -eq 1", {"item": 1}) is True
    assert run("$true -and $TRUE", {"true": False}) is True  # constants are not variables


def test_and_or_short_circuit() -> None:
    def explode(target: object, name: str) -> object:
        raise AssertionError(f"evaluated {name}")

    assert evaluate(block_body("$false -and $_.Boom"), {"_": {}}, explode) is False
    assert evaluate(block_body("$true -or $_.Boom"), {"_": {}}, explode) is True


def test_script_blocks_and_literals_evaluate_to_themselves() -> None:
    block = only_value("{ 1 }")
    assert isinstance(block, ScriptBlock)
    assert evaluate(block, {}, get_property) is block
    assert evaluate(Literal("x", quoted=True), {}, get_property) == "x"


def test_nested_pipelines_need_a_runner() -> None:
    body = block_body("Get-Service")
    assert isinstance(body, SubExpression)
    seen: list[Pipeline] = []

    def runner(pipeline: Pipeline) -> object:
        seen.append(pipeline)
        return ["MSExchangePOP3"]

    assert evaluate(body, {}, get_property, runner) == ["MSExchangePOP3"]
    assert seen == [body.pipeline]
    with pytest.raises(EvaluationError) as caught:
        evaluate(body, {}, get_property)
    assert caught.value.error_id == "CommandNotAllowed"


def test_comparing_a_number_with_text_that_is_not_a_number_fails() -> None:
    with pytest.raises(EvaluationError) as caught:
        run("10 -gt 'abc'")
    assert caught.value.error_id == "ComparisonFailure"
    assert str(caught.value) == (
        'Could not compare "10" to "abc". Error: "Cannot convert value "abc" to type '
        '"System.Int32". Error: "Input string was not in a correct format.""'
    )


def test_an_invalid_regular_expression_fails() -> None:
    with pytest.raises(EvaluationError) as caught:
        run("'a' -match '(unclosed'")
    assert caught.value.error_id == "InvalidRegularExpression"
    assert caught.value.message == "The regular expression pattern (unclosed is not valid."
    assert run("'[' -match '[[]'") is True  # Python warns on this set; .NET accepts it


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("$_ -eq 'Running'", True),
        ("$_ -eq 'running'", True),
        ("$_ -eq 4", True),
        ("$_ -gt 1", True),
        ("$_ -like 'Run*'", True),
        ("$_ -in 'Stopped','Running'", True),
        ("$_ -eq 'Stopped'", False),
    ],
)
def test_enums_compare_by_name_or_number(source: str, expected: bool) -> None:
    assert run(source, {"_": ServiceStatus.Running}) is expected


def test_string_enums_compare_as_their_text() -> None:
    assert run("$_ -eq 'ssl'", {"_": Mode.Tls}) is True
    assert run("$_ -like 'pl*'", {"_": Mode.Plain}) is True


def test_dates_compare_with_dates_and_date_text() -> None:
    when = {"When": datetime(2024, 1, 2, 3, 4, 5)}  # naive: local time
    assert run("$_.When -gt '1/1/2024'", {"_": when}) is True
    assert run("$_.When -lt '2024-01-02T03:04:06'", {"_": when}) is True
    assert run("$_.When -eq '1/2/2024 3:04:05 AM'", {"_": when}) is True
    aware = {"When": datetime(2024, 1, 2, tzinfo=UTC)}
    assert run("$_.When -gt '2023-12-31T00:00:00+00:00'", {"_": aware}) is True
    with pytest.raises(EvaluationError) as caught:
        run("$_.When -gt 'soon'", {"_": when})
    assert caught.value.error_id == "ComparisonFailure"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (True, True),
        (0, False),
        (0.0, False),
        (2, True),
        (-1, True),
        ("", False),
        ("False", True),
        ("0", True),
        ([], False),
        ((), False),
        ([0], False),
        ([1], True),
        ([0, 0], True),
        ({}, True),
        (object(), True),
        (ServiceStatus.Running, True),
    ],
)
def test_is_true(value: object, expected: bool) -> None:
    assert is_true(value) is expected


def test_compare_directly() -> None:
    assert compare("eq", "a", "A") is True
    assert compare("ceq", "a", "A") is False
    assert compare("notcontains", [1, 2], 3) is True
    with pytest.raises(ValueError, match="not a comparison operator"):
        compare("plus", 1, 2)


# --- properties ----------------------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        "Get-Service",
        "Where-Object",
        " ",
        "\t",
        "-Name",
        "-Name:",
        "-",
        "--",
        "$_",
        ".Status",
        "$",
        "${",
        "'",
        "''",
        '"',
        "`",
        "{",
        "}",
        "(",
        ")",
        "@{",
        "@(",
        "$(",
        "@",
        "|",
        ";",
        ",",
        "\n",
        "\r\n",
        "\r",
        "#",
        "<#",
        "#>",
        "=",
        "-eq",
        "-like",
        "-not",
        "-and",
        "-replace",
        "!",
        "*",
        "?",
        "[",
        "]",
        "10MB",
        "0x1F",
        "-1",
        ".5",
        "1.00:00:00",
        "\u2018",
        "\u201c",
        "\u2013",
        "&",
        "<",
        ">",
        "a",
        "1",
        ".",
        ":",
        "+",
    ]
)
SCRIPTS = st.one_of(st.text(), st.lists(FRAGMENTS, max_size=40).map("".join))


@settings(max_examples=500, deadline=None)
@given(SCRIPTS)
def test_parse_raises_only_parse_errors_with_sane_positions(source: str) -> None:
    result = parse_or_error(source)
    if isinstance(result, ParseError):
        assert result.source_line == source_lines(source)[result.line - 1]
        assert 1 <= result.column <= len(result.source_line) + 1
        assert needs_more_input(source) is result.incomplete
    else:
        assert needs_more_input(source) is False
        for pipeline in result.statements:
            for command in pipeline.commands:
                assert command.text in source


def parse_or_error(source: str) -> Script | ParseError:
    """The script, or the ParseError; anything else propagates and fails the test."""
    try:
        return parse(source)
    except ParseError as error:
        return error


def quote_single(value: str) -> str:
    """Quote as PowerShell's own escaping does: double every single-quote character."""
    return "'" + "".join(c * 2 if c in "'\u2018\u2019\u201a\u201b" else c for c in value) + "'"


def quote_double(value: str) -> str:
    return '"' + "".join("`" + c if c in '`"\u201c\u201d\u201e' else c for c in value) + '"'


@given(st.text())
def test_single_quoted_strings_round_trip(value: str) -> None:
    assert elements(f"Cmd {quote_single(value)}") == (Literal(value, quoted=True),)


@given(st.text())
def test_double_quoted_strings_round_trip(value: str) -> None:
    assert elements(f"Cmd {quote_double(value)}") == (Literal(value, quoted=True),)


@given(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
def test_numbers_round_trip(number: int | float) -> None:
    (value,) = elements(f"Cmd {number!r}")
    assert value == Literal(number)
    assert isinstance(value, Literal)
    assert type(value.value) is type(number)


BAREWORDS = st.from_regex(r"[A-Za-z][A-Za-z0-9.:_*?-]{0,20}", fullmatch=True)


@given(st.lists(BAREWORDS, min_size=2, max_size=6), st.sampled_from([",", ", ", " ,", ",\n"]))
def test_barewords_joined_by_commas_make_an_array(words: list[str], comma: str) -> None:
    assert elements("Cmd " + comma.join(words)) == (ArrayLiteral(tuple(map(word, words))),)


def escape_wildcards(value: str) -> str:
    return "".join("`" + c if c in "*?[]`" else c for c in value)


@given(st.text())
def test_escaped_text_has_no_wildcards_and_matches_itself(value: str) -> None:
    escaped = escape_wildcards(value)
    assert not has_wildcards(escaped)
    assert wildcard_match(escaped, value)
    assert wildcard_match(escaped, value, case_sensitive=True)


@given(st.text(alphabet=string.printable), st.text(alphabet=string.printable))
def test_star_wraps_find_substrings_ignoring_case(needle: str, haystack: str) -> None:
    pattern = "*" + escape_wildcards(needle) + "*"
    assert wildcard_match(pattern, haystack) is (needle.lower() in haystack.lower())


OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


@given(st.integers(), st.sampled_from(sorted(OPERATORS)), st.integers())
def test_number_comparisons_agree_with_python(left: int, name: str, right: int) -> None:
    assert run(f"{left} -{name} {right}") is OPERATORS[name](left, right)
    assert run(f"{left} -{name} '{right}'") is OPERATORS[name](left, right)
