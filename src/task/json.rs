//! JSON text shaped the way Go's `encoding/json` writes it, for the oz CLI arguments and the
//! dispatch payload: no insignificant whitespace, and `<`, `>`, `&`, U+2028 and U+2029 escaped
//! inside strings. serde_json already writes compact text with Go's key order for our structs
//! and sorted keys for `BTreeMap`s; [`go_compact`] adds the rest, and compacts raw JSON values
//! (MCP server configs) that were kept verbatim, exactly as Go's `json.Marshal` does for a
//! `json.RawMessage`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::protocol::{CloneFrom, RawJson, RepositoryHeadOverride};

/// Removes whitespace outside strings and applies Go's HTML-safe escapes inside them. Every
/// other byte, including existing escape sequences, is kept as it is, so key order and number
/// spelling survive. Never fails: text that is not JSON comes out with the same treatment.
pub(crate) fn go_compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            if escaped {
                // The character after a backslash belongs to the escape sequence.
                escaped = false;
                out.push(c);
                continue;
            }
            match c {
                '\\' => {
                    escaped = true;
                    out.push(c);
                }
                '"' => {
                    in_string = false;
                    out.push(c);
                }
                '<' => out.push_str("\\u003c"),
                '>' => out.push_str("\\u003e"),
                '&' => out.push_str("\\u0026"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                _ => out.push(c),
            }
        } else {
            match c {
                ' ' | '\t' | '\n' | '\r' => {}
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
    }
    out
}

/// The `--mcp` value: the whole `mcp_servers` map as one compact object, server names sorted
/// (the map is a `BTreeMap`), each server's own JSON compacted with its key order kept.
/// `None` when the map cannot be written (it always can; Go skips the flag in that case).
pub(crate) fn mcp_json(servers: &BTreeMap<String, RawJson>) -> Option<String> {
    serde_json::to_string(servers).ok().map(|s| go_compact(&s))
}

/// One repository head override, with Go's field order and omissions: `clone_from` only when
/// present and `preserve_origin` only when true (Go's `bool` with `omitempty`).
#[derive(Serialize)]
struct OverrideWire<'a> {
    code_forge: &'a str,
    repo_owner: &'a str,
    repo_name: &'a str,
    head: HeadWire<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clone_from: Option<&'a CloneFrom>,
    #[serde(skip_serializing_if = "is_false")]
    preserve_origin: bool,
}

#[derive(Serialize)]
struct HeadWire<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    value: &'a str,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The `--repository-head-override-json` value for one override. `None` only if the value
/// cannot be written, which cannot happen for strings and booleans.
pub(crate) fn override_json(o: &RepositoryHeadOverride) -> Option<String> {
    let wire = OverrideWire {
        code_forge: &o.code_forge,
        repo_owner: &o.repo_owner,
        repo_name: &o.repo_name,
        head: HeadWire {
            kind: &o.head.kind,
            value: &o.head.value,
        },
        clone_from: o.clone_from.as_ref(),
        preserve_origin: o.preserve_origin.unwrap_or(false),
    };
    serde_json::to_string(&wire).ok().map(|s| go_compact(&s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RepositoryHead;

    fn raw(text: &str) -> RawJson {
        RawJson(serde_json::value::RawValue::from_string(text.to_owned()).unwrap())
    }

    #[test]
    fn compact_removes_whitespace_outside_strings_only() {
        let input = "{ \"a b\" : [ 1 ,\n\t2 ] ,\r\n \"c\" : \"  x  \" }";
        assert_eq!(go_compact(input), r#"{"a b":[1,2],"c":"  x  "}"#);
    }

    #[test]
    fn compact_keeps_escaped_quotes_and_backslashes_inside_strings() {
        let input = r#"{ "k" : "say \"hi\" \\ " , "z":"\\" , "w" : 1 }"#;
        assert_eq!(
            go_compact(input),
            r#"{"k":"say \"hi\" \\ ","z":"\\","w":1}"#
        );
    }

    #[test]
    fn compact_escapes_html_characters_inside_strings_like_go() {
        let input = r#"{"cmd": "a < b && c > d"}"#;
        assert_eq!(
            go_compact(input),
            r#"{"cmd":"a \u003c b \u0026\u0026 c \u003e d"}"#
        );
    }

    #[test]
    fn compact_escapes_line_and_paragraph_separators() {
        let input = "{\"s\": \"a\u{2028}b\u{2029}c\"}";
        assert_eq!(go_compact(input), r#"{"s":"a\u2028b\u2029c"}"#);
    }

    #[test]
    fn compact_keeps_unicode_and_existing_escapes_verbatim() {
        let input = r#"{ "é" : "日本 \u00e9 \/ \n \u003c" }"#;
        assert_eq!(go_compact(input), r#"{"é":"日本 \u00e9 \/ \n \u003c"}"#);
    }

    #[test]
    fn compact_keeps_number_spelling() {
        assert_eq!(go_compact("[ 1.50 , 1e3 , -0 ]"), "[1.50,1e3,-0]");
    }

    #[test]
    fn compact_survives_garbage_without_panicking() {
        for input in ["\"unterminated \\", "\\", "\"", "}{", "\"\\u12", "  ", ""] {
            let _ = go_compact(input);
        }
        assert_eq!(go_compact("\"a \\"), "\"a \\");
    }

    #[test]
    fn mcp_json_sorts_servers_and_keeps_inner_key_order() {
        let mut servers = BTreeMap::new();
        servers.insert(
            "zeta".to_owned(),
            raw(r#"{ "url" : "https://z.example/?a=1&b=2", "a": 1 }"#),
        );
        servers.insert(
            "alpha".to_owned(),
            raw("{\n  \"command\": \"npx\",\n  \"args\": [ \"-y\", \"server <x>\" ],\n  \"env\": {}\n}"),
        );
        assert_eq!(
            mcp_json(&servers).unwrap(),
            r#"{"alpha":{"command":"npx","args":["-y","server \u003cx\u003e"],"env":{}},"zeta":{"url":"https://z.example/?a=1\u0026b=2","a":1}}"#
        );
    }

    #[test]
    fn mcp_json_escapes_server_names() {
        let mut servers = BTreeMap::new();
        servers.insert("a<b> \"q\"".to_owned(), raw("true"));
        assert_eq!(
            mcp_json(&servers).unwrap(),
            r#"{"a\u003cb\u003e \"q\"":true}"#
        );
    }

    #[test]
    fn mcp_json_keeps_hostile_strings_intact() {
        let mut servers = BTreeMap::new();
        servers.insert(
            "s".to_owned(),
            raw(r#"{"x": "} , { \" : [ ", "y" : "\\\"", "u": "\ud83d\ude00 😀"}"#),
        );
        let out = mcp_json(&servers).unwrap();
        assert_eq!(
            out,
            r#"{"s":{"x":"} , { \" : [ ","y":"\\\"","u":"\ud83d\ude00 😀"}}"#
        );
        // Still valid JSON that means the same thing.
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["s"]["x"], "} , { \" : [ ");
        assert_eq!(v["s"]["y"], "\\\"");
        assert_eq!(v["s"]["u"], "😀 😀");
    }

    fn override_fixture() -> RepositoryHeadOverride {
        RepositoryHeadOverride {
            code_forge: "GITHUB".into(),
            repo_owner: "warpdotdev".into(),
            repo_name: "warp-server".into(),
            head: RepositoryHead {
                kind: "BRANCH".into(),
                value: "develop".into(),
            },
            clone_from: None,
            preserve_origin: None,
        }
    }

    #[test]
    fn override_json_without_clone_from() {
        assert_eq!(
            override_json(&override_fixture()).unwrap(),
            r#"{"code_forge":"GITHUB","repo_owner":"warpdotdev","repo_name":"warp-server","head":{"type":"BRANCH","value":"develop"}}"#
        );
    }

    #[test]
    fn override_json_with_clone_from_and_preserve_origin() {
        let mut o = override_fixture();
        o.repo_name = "warp".into();
        o.head = RepositoryHead {
            kind: "COMMIT_SHA".into(),
            value: "0123456789abcdef0123456789abcdef01234567".into(),
        };
        o.clone_from = Some(CloneFrom {
            code_forge: "GITHUB".into(),
            owner: "warpdotdev".into(),
            repo: "warp-for-benchmarks".into(),
        });
        o.preserve_origin = Some(true);
        assert_eq!(
            override_json(&o).unwrap(),
            r#"{"code_forge":"GITHUB","repo_owner":"warpdotdev","repo_name":"warp","head":{"type":"COMMIT_SHA","value":"0123456789abcdef0123456789abcdef01234567"},"clone_from":{"code_forge":"GITHUB","owner":"warpdotdev","repo":"warp-for-benchmarks"},"preserve_origin":true}"#
        );
    }

    #[test]
    fn override_json_omits_false_preserve_origin_like_go() {
        let mut o = override_fixture();
        o.preserve_origin = Some(false);
        assert!(!override_json(&o).unwrap().contains("preserve_origin"));
    }

    #[test]
    fn override_json_escapes_html_in_values() {
        let mut o = override_fixture();
        o.head.value = "feat/<a&b>".into();
        assert!(
            override_json(&o)
                .unwrap()
                .contains(r#""value":"feat/\u003ca\u0026b\u003e""#)
        );
    }
}
