//! Syntax check for Kubernetes resource quantities (`8Gi`, `500M`, `1e3`, `0.5`, `100m`).
//!
//! The worker only forwards the string to the API server, so it validates the grammar of
//! `k8s.io/apimachinery` `resource.ParseQuantity` and does not compute the value:
//!
//! ```text
//! quantity        ::= signedNumber suffix
//! signedNumber    ::= [+-]? number
//! number          ::= digits | digits "." digits? | "." digits
//! suffix          ::= binarySI | decimalSI | decimalExponent
//! binarySI        ::= Ki | Mi | Gi | Ti | Pi | Ei
//! decimalSI       ::= n | u | m | "" | k | M | G | T | P | E
//! decimalExponent ::= (e | E) [+-]? digits        (fits in an i32, as in Go)
//! ```

use std::fmt;

/// Why a quantity was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuantityError {
    Empty,
    /// The number part is malformed.
    Number,
    /// The suffix is not a known unit or exponent.
    Suffix(String),
    /// The exponent does not fit in an i32.
    Exponent(String),
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantityError::Empty => f.write_str("quantity is empty"),
            QuantityError::Number => f.write_str(
                "quantities must be a number with an optional unit, e.g. 8Gi, 500M, 1e3, 0.5",
            ),
            QuantityError::Suffix(s) => write!(
                f,
                "unknown unit {s:?} (expected one of Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E or an exponent like e3)"
            ),
            QuantityError::Exponent(s) => write!(f, "exponent {s:?} is out of range"),
        }
    }
}

impl std::error::Error for QuantityError {}

const SUFFIXES: [&str; 15] = [
    "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E",
];

/// A syntactically valid quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub negative: bool,
    /// True when every digit of the number is zero.
    pub zero: bool,
}

/// Checks `s` against the quantity grammar.
pub fn parse_quantity(s: &str) -> Result<Quantity, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let (negative, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, mut rest) = rest.split_at(int_len);
    let mut frac_part = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        frac_part = &after_dot[..frac_len];
        rest = &after_dot[frac_len..];
    }
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(QuantityError::Number);
    }
    let zero = int_part.bytes().chain(frac_part.bytes()).all(|c| c == b'0');
    let quantity = Quantity { negative, zero };
    if rest.is_empty() || SUFFIXES.contains(&rest) {
        return Ok(quantity);
    }
    if let Some(exp) = rest.strip_prefix(['e', 'E']) {
        let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
            return match exp.parse::<i32>() {
                Ok(_) => Ok(quantity),
                Err(_) => Err(QuantityError::Exponent(rest.to_owned())),
            };
        }
    }
    Err(QuantityError::Suffix(rest.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_quantities() {
        for s in [
            "8Gi",
            "500M",
            "1e3",
            "0.5",
            "100m",
            "0",
            "1",
            "+1",
            "-1",
            "1Ki",
            "1Mi",
            "1Gi",
            "1Ti",
            "1Pi",
            "1Ei",
            "1n",
            "1u",
            "1m",
            "1k",
            "1M",
            "1G",
            "1T",
            "1P",
            "1E",
            "1.5Gi",
            ".5Gi",
            "1.Gi",
            "1.",
            ".5",
            "1e-3",
            "1E+3",
            "1e0",
            "12E6",
            "0.000001",
            "007",
            "1e2147483647",
            "1e-2147483648",
            "123456789012345678901234567890",
            "99999999999999999999999Ei",
        ] {
            assert!(parse_quantity(s).is_ok(), "{s:?} should parse");
        }
    }

    #[test]
    fn rejects_invalid_quantities() {
        let cases: &[(&str, QuantityError)] = &[
            ("", QuantityError::Empty),
            ("-", QuantityError::Number),
            ("+", QuantityError::Number),
            (".", QuantityError::Number),
            ("Gi", QuantityError::Number),
            ("-Gi", QuantityError::Number),
            ("e3", QuantityError::Number),
            ("8GB", QuantityError::Suffix("GB".into())),
            ("8gi", QuantityError::Suffix("gi".into())),
            ("8K", QuantityError::Suffix("K".into())),
            ("8Ki ", QuantityError::Suffix("Ki ".into())),
            (" 8Ki", QuantityError::Number),
            ("8 Ki", QuantityError::Suffix(" Ki".into())),
            ("1.2.3", QuantityError::Suffix(".3".into())),
            ("1e", QuantityError::Suffix("e".into())),
            ("1e+", QuantityError::Suffix("e+".into())),
            ("1e3.5", QuantityError::Suffix("e3.5".into())),
            ("1e3Gi", QuantityError::Suffix("e3Gi".into())),
            ("1Gie3", QuantityError::Suffix("Gie3".into())),
            ("--1", QuantityError::Number),
            ("1ee3", QuantityError::Suffix("ee3".into())),
            ("0x10", QuantityError::Suffix("x10".into())),
            (
                "1e2147483648",
                QuantityError::Exponent("e2147483648".into()),
            ),
            (
                "1e99999999999999999999",
                QuantityError::Exponent("e99999999999999999999".into()),
            ),
            ("１Gi", QuantityError::Number),
            ("1µ", QuantityError::Suffix("µ".into())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_quantity(input).as_ref(), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn reports_sign_and_zero() {
        assert_eq!(
            parse_quantity("-1Gi"),
            Ok(Quantity {
                negative: true,
                zero: false
            })
        );
        assert_eq!(
            parse_quantity("0.0Mi"),
            Ok(Quantity {
                negative: false,
                zero: true
            })
        );
        assert_eq!(
            parse_quantity("-0"),
            Ok(Quantity {
                negative: true,
                zero: true
            })
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        assert_eq!(
            parse_quantity("8GB").unwrap_err().to_string(),
            "unknown unit \"GB\" (expected one of Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E or an exponent like e3)"
        );
        assert_eq!(
            parse_quantity("abc").unwrap_err().to_string(),
            "quantities must be a number with an optional unit, e.g. 8Gi, 500M, 1e3, 0.5"
        );
        assert_eq!(
            parse_quantity("1e9999999999").unwrap_err().to_string(),
            "exponent \"e9999999999\" is out of range"
        );
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let long = "9".repeat(100_000);
        assert!(parse_quantity(&long).is_ok());
        for s in [
            "\u{0}", "1\u{0}", "é", "1é", "-é", ".é", "1.é", "1eé", "1e-é",
        ] {
            assert!(parse_quantity(s).is_err(), "{s:?}");
        }
    }
}
