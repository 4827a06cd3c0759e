use super::*;

fn one(text: &str) -> (String, String) {
    let vars = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(vars.len(), 1, "{text:?} -> {vars:?}");
    vars.into_iter().next().unwrap()
}

fn value(text: &str) -> String {
    one(text).1
}

fn kind(text: &str) -> ErrorKind {
    parse(text).expect_err(text).kind
}

#[test]
fn plain_and_spaced_assignments() {
    assert_eq!(one("FOO=bar"), ("FOO".into(), "bar".into()));
    assert_eq!(value("FOO =bar"), "bar");
    assert_eq!(value("FOO= bar"), "bar");
    assert_eq!(value(" KEY =value"), "value");
    assert_eq!(value("\tKEY=value"), "value");
    assert_eq!(value("FOO=bar \t "), "bar");
    assert_eq!(value("KEY=value value"), "value value");
    assert_eq!(value("FOO=foobar="), "foobar=");
    assert_eq!(value("OPTION_A=1:B"), "1:B");
    assert_eq!(one("FOO.BAR=foobar").0, "FOO.BAR");
    assert_eq!(one("lower_case=1").0, "lower_case");
}

#[test]
fn yaml_style_separator() {
    assert_eq!(value("OPTION_A: 1"), "1");
    assert_eq!(value("OPTION_A: Foo=bar"), "Foo=bar");
    assert_eq!(value("KEY: value value\n"), "value value");
    assert_eq!(value("---\nKEY:value"), "value");
}

#[test]
fn export_prefix() {
    assert_eq!(one("export OPTION_A=2"), ("OPTION_A".into(), "2".into()));
    assert_eq!(one("export\tOPTION_A=2").0, "OPTION_A");
    assert_eq!(one("  export OPTION_A=2").0, "OPTION_A");
    assert_eq!(one(" \t\t export    A=a\n").0, "A");
    assert_eq!(one("export exportFoo=2").0, "exportFoo");
    assert_eq!(one("exportFOO=2").0, "exportFOO");
    assert_eq!(one("export_FOO =2").0, "export_FOO");
    assert_eq!(one("export.FOO= 2").0, "export.FOO");
    assert_eq!(value("export OPTION_B='\\n'"), "\\n");
}

#[test]
fn blank_lines_comments_and_crlf() {
    assert!(parse("").unwrap().is_empty());
    assert!(
        parse("\n\r\n\t\t \n# comment\n\t # indented\n")
            .unwrap()
            .is_empty()
    );
    let vars = parse("# head\r\nA=1\r\n\r\nB=\"two\"\r\nC='3'\r\n").unwrap();
    assert_eq!(
        vars,
        [
            ("A".to_owned(), "1".to_owned()),
            ("B".into(), "two".into()),
            ("C".into(), "3".into())
        ]
    );
    assert_eq!(value(" \t \t\n\t \t A=a\n"), "a");
}

#[test]
fn inline_comments_only_on_unquoted_values() {
    assert_eq!(value("FOO=bar # this is foo"), "bar");
    assert_eq!(value("FOO=bar#baz"), "bar#baz");
    assert_eq!(value("FOO=a # b # c"), "a # b");
    assert_eq!(value("FOO=\"bar#baz\" # comment"), "bar#baz");
    assert_eq!(value("FOO='bar#baz' # comment"), "bar#baz");
    assert_eq!(value("FOO=\"bar#baz#bang\" # comment"), "bar#baz#bang");
    assert_eq!(value("FOO=\"ba#r\""), "ba#r");
    assert_eq!(value("FOO='ba#r'#c"), "ba#r");
}

#[test]
fn quoting() {
    assert_eq!(value("FOO=\"bar\""), "bar");
    assert_eq!(value("FOO='bar'"), "bar");
    assert_eq!(value(r#"FOO="escaped\"bar""#), "escaped\"bar");
    assert_eq!(value(r#"FOO="'d'""#), "'d'");
    assert_eq!(value(r#"FOO="bar\nbaz""#), "bar\nbaz");
    assert_eq!(value(r#"FOO="bar\n\ b\az""#), "bar\n baz");
    assert_eq!(value(r#"FOO="bar\\\n\ b\az""#), "bar\\\n baz");
    assert_eq!(value(r#"FOO="bar\\r\ b\az""#), "bar\\r baz");
    assert_eq!(value(r#"FOO="a\rb""#), "a\rb");
    assert_eq!(value(r#"FOO="ends with \"""#), "ends with \"");
    assert_eq!(value(r"FOO='no \n escapes'"), r"no \n escapes");
    assert_eq!(value("FOO=\"line 1\nline 2\""), "line 1\nline 2");
    assert_eq!(value("FOO='line 1\r\nline 2'"), "line 1\nline 2");
    assert_eq!(
        value("OPTION_K='line one\nthis is \\'quoted\\'\none more line'"),
        "line one\nthis is \\'quoted\\'\none more line"
    );
}

#[test]
fn empty_values() {
    assert_eq!(value("A="), "");
    assert_eq!(value("A=   "), "");
    assert_eq!(value("A=\n"), "");
    assert_eq!(value("A=\"\""), "");
    assert_eq!(value("A=''"), "");
    assert_eq!(value("A= # only a comment"), "# only a comment");
    let vars = parse("A=\nB=2").unwrap();
    assert_eq!(vars[0], ("A".into(), "".into()));
    assert_eq!(vars[1], ("B".into(), "2".into()));
}

#[test]
fn expansion_from_earlier_keys_only() {
    let get = |text: &str, key: &str| {
        parse(text)
            .unwrap()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap()
    };
    assert_eq!(get("FOO=test\nBAR=$FOO", "BAR"), "test");
    assert_eq!(get("FOO=test\nBAR=${FOO}bar", "BAR"), "testbar");
    assert_eq!(get("BAR=$FOO", "BAR"), "");
    assert_eq!(
        get("BAR=$PATH", "BAR"),
        "",
        "never the worker's own environment"
    );
    assert_eq!(get("FOO=test\nBAR=\"quote $FOO\"", "BAR"), "quote test");
    assert_eq!(get("FOO=x\nBAR='quote $FOO'", "BAR"), "quote $FOO");
    assert_eq!(get(r#"FOO="foo\$BAR""#, "FOO"), "foo$BAR");
    assert_eq!(get(r#"FOO="foo\${BAR}""#, "FOO"), "foo${BAR}");
    assert_eq!(
        get("FOO=test\nBAR=\"foo\\${FOO} ${FOO}\"", "BAR"),
        "foo${FOO} test"
    );
    assert_eq!(
        get("BAR=$FOO\nFOO=late", "BAR"),
        "",
        "later keys do not count"
    );
    assert_eq!(get("lower=x\nBAR=$lower", "BAR"), "$lower");
    assert_eq!(get("BAR=${lower}", "BAR"), "${lower}");
    assert_eq!(get("BAR=cost $", "BAR"), "cost $");
    assert_eq!(get("A=1\nBAR=$(A)", "BAR"), "$(A)");
    assert_eq!(get("A=1\nA=$A$A", "A"), "11");
}

#[test]
fn later_definitions_win_in_place() {
    let vars = parse("A=1\nB=2\nA=3").unwrap();
    assert_eq!(vars, [("A".into(), "3".into()), ("B".into(), "2".into())]);
}

#[test]
fn utf8_names_and_values() {
    assert_eq!(one("GRÜSSE=grüße 🎉"), ("GRÜSSE".into(), "grüße 🎉".into()));
    assert_eq!(value("A=\"ünïcødé\\n\""), "ünïcødé\n");
    assert_eq!(value("A=x\u{A0}"), "x", "NBSP is trimmed like godotenv");
}

#[test]
fn errors_carry_line_numbers() {
    assert_eq!(
        parse("A=1\n\nlol$wut").unwrap_err(),
        ParseError {
            line: 3,
            kind: ErrorKind::UnexpectedCharacterInName
        }
    );
    assert_eq!(parse("A=1\nB=\"open\nC=2\n").unwrap_err().line, 2);
    assert_eq!(kind("B='open"), ErrorKind::UnterminatedQuote);
    assert_eq!(kind("B=\"open\\\""), ErrorKind::UnterminatedQuote);
    assert_eq!(kind("JUSTANAME"), ErrorKind::MissingSeparator);
    assert_eq!(kind("JUSTANAME\nB=1"), ErrorKind::MissingSeparator);
    assert_eq!(kind("=value"), ErrorKind::EmptyName);
    assert_eq!(kind("=\"value\""), ErrorKind::EmptyName);
    assert_eq!(kind("FOO BAR=1"), ErrorKind::UnexpectedCharacterInName);
    assert_eq!(kind("A-B=1"), ErrorKind::UnexpectedCharacterInName);
    assert_eq!(kind("A=\"x\" B=y"), ErrorKind::TextAfterQuotedValue);
    assert_eq!(kind("A='it''"), ErrorKind::TextAfterQuotedValue);
    assert_eq!(
        parse("A=1\r\nB\r\n").unwrap_err().to_string(),
        "line 2: variable name without '=' or ':'"
    );
}

#[test]
fn errors_never_echo_the_text() {
    let e = parse("TOKEN=\"s3cr3t-value").unwrap_err();
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
    let e = parse("s3cr3t-value-without-key").unwrap_err();
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
}

#[test]
fn hostile_input_never_panics() {
    let samples: &[&str] = &[
        "\"",
        "'",
        "=",
        ":",
        "export",
        "export ",
        "export =",
        "$",
        "\\",
        "A=\\",
        "A=\"\\",
        "A=\"\\\"",
        "A=${",
        "A=${X",
        "A=$\u{e9}",
        "A=\"\\\u{e9}\"",
        "\u{85}A=1",
        "#",
        "A=#",
        "A= #",
        "---",
        "---x",
        "A=\r",
        "\r\r\r",
        "A='\u{1F600}",
        "🎉=1",
        "A.=1",
        "\0=1",
        "A=\0",
        "A=\"$\"",
        "A=\"\\$\"",
        "A=${}",
        "A=$()",
        "A=$(",
        "A=\\$",
    ];
    for s in samples {
        let _ = parse(s);
    }
    // Every prefix of a mixed file, cut on character boundaries.
    let file = "export A='x y'\nB=\"q\\\"\\n$A ${A}\" # c\r\nC: ünï # d\n# e\nD=$B\n";
    for (i, _) in file.char_indices() {
        let _ = parse(&file[..i]);
    }
    let vars = parse(file).unwrap();
    assert_eq!(vars[1].1, "q\"\nx y x y");
    assert_eq!(vars[3].1, "q\"\nx y x y");
}

#[test]
fn load_reads_files_and_reports_problems() {
    let dir = std::env::temp_dir().join(format!("oz-dotenv-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.env");
    std::fs::write(&good, "A=1\nB='2'\n").unwrap();
    assert_eq!(load(&good).unwrap().len(), 2);
    let empty = dir.join("empty.env");
    std::fs::write(&empty, "").unwrap();
    assert!(load(&empty).unwrap().is_empty());
    let bad = dir.join("bad.env");
    std::fs::write(&bad, b"A=1\nB=\xff\n").unwrap();
    assert!(matches!(
        load(&bad),
        Err(LoadError::NotUtf8 { line: 2, .. })
    ));
    let big = dir.join("big.env");
    std::fs::write(
        &big,
        vec![b'#'; usize::try_from(MAX_FILE_BYTES).unwrap() + 1],
    )
    .unwrap();
    assert!(matches!(load(&big), Err(LoadError::TooLarge { .. })));
    let broken = dir.join("broken.env");
    std::fs::write(&broken, "A=\"x").unwrap();
    let e = load(&broken).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("broken.env: line 1: unterminated quoted value"),
        "{e}"
    );
    assert!(matches!(
        load(&dir.join("missing")),
        Err(LoadError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
