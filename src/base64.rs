//! Base64 (RFC 4648): the standard alphabet for Docker config `auth` fields and proxy Basic
//! auth, the URL-safe one for the `X-Registry-Auth` header. Small enough not to earn a crate.

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode_with(input: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for group in input.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(alphabet[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard alphabet, padded.
pub fn encode(input: &[u8]) -> String {
    encode_with(input, STANDARD)
}

/// URL-safe alphabet, padded (what the Docker CLI sends in `X-Registry-Auth`).
pub fn encode_url_safe(input: &[u8]) -> String {
    encode_with(input, URL_SAFE)
}

/// Why a base64 string did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A byte outside both alphabets, at this offset.
    InvalidByte(usize),
    /// The length (without padding) leaves a lone 6-bit group, or padding is misplaced.
    InvalidLength,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::InvalidByte(at) => write!(f, "invalid base64 byte at offset {at}"),
            DecodeError::InvalidLength => f.write_str("invalid base64 length or padding"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Decodes either alphabet, padded or not (config files in the wild have both).
pub fn decode(input: &str) -> Result<Vec<u8>, DecodeError> {
    let bytes = input.trim_ascii().as_bytes();
    let data = bytes
        .strip_suffix(b"==")
        .or_else(|| bytes.strip_suffix(b"="));
    let (data, padded) = match data {
        Some(d) => (d, true),
        None => (bytes, false),
    };
    if padded && !bytes.len().is_multiple_of(4) {
        return Err(DecodeError::InvalidLength);
    }
    if data.len() % 4 == 1 {
        return Err(DecodeError::InvalidLength);
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for (g, group) in data.chunks(4).enumerate() {
        let mut n = 0u32;
        for (i, &b) in group.iter().enumerate() {
            let v = value(b).ok_or(DecodeError::InvalidByte(g * 4 + i))?;
            n |= u32::from(v) << (18 - 6 * i);
        }
        let [_, b0, b1, b2] = n.to_be_bytes();
        out.extend_from_slice(&[b0, b1, b2][..group.len() - 1]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_credentials_and_high_bytes() {
        // Moved from the link's proxy tests: `Proxy-Authorization: Basic` values.
        assert_eq!(encode(b"user:pa ss"), "dXNlcjpwYSBzcw==");
        assert_eq!(encode(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in vectors {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
            assert_eq!(
                decode(coded.trim_end_matches('=')).unwrap(),
                plain.as_bytes()
            );
        }
    }

    #[test]
    fn url_safe_uses_dash_and_underscore() {
        let input = [0xfb, 0xff, 0xbf];
        assert_eq!(encode(&input), "+/+/");
        assert_eq!(encode_url_safe(&input), "-_-_");
        assert_eq!(decode("-_-_").unwrap(), input);
        assert_eq!(decode("+/+/").unwrap(), input);
    }

    #[test]
    fn round_trips_every_length_and_byte() {
        let data: Vec<u8> = (0..=255u8).collect();
        for len in 0..data.len() {
            let slice = &data[..len];
            assert_eq!(decode(&encode(slice)).unwrap(), slice);
            assert_eq!(decode(&encode_url_safe(slice)).unwrap(), slice);
        }
    }

    #[test]
    fn docker_auth_field() {
        assert_eq!(encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(decode(" dXNlcjpwYXNz\n").unwrap(), b"user:pass");
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(decode("Zm9v!A"), Err(DecodeError::InvalidByte(4)));
        assert_eq!(decode("Z"), Err(DecodeError::InvalidLength));
        assert_eq!(decode("Zm9vY"), Err(DecodeError::InvalidLength));
        assert_eq!(decode("Zg="), Err(DecodeError::InvalidLength));
        assert_eq!(decode("Z==="), Err(DecodeError::InvalidByte(1)));
        assert_eq!(decode("Zg==Zg=="), Err(DecodeError::InvalidByte(2)));
        assert!(decode("é").is_err());
    }
}
