//! The short-lived token task-log exports carry, issued by Warp's GraphQL API for the task
//! (`issueTaskIdentityToken`, audience `warp-cloud-agent-otel`, 3 hours).
//!
//! Fetched lazily on the exporter thread, so a slow server delays only log export. Refreshed
//! at expiry minus min(1 min, lifetime/5); a failed refresh keeps the still-valid token and
//! tries again in 30 s. Every token is added to the task's redactor and the process-wide one
//! before it is used, and is never given to the task.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::TaskRedactor;
use super::export::Bearer;
use super::gate::TaskCredentials;
use super::send::{Request, SendError, Transport};

pub const AUDIENCE: &str = "warp-cloud-agent-otel";
pub const REQUESTED_SECONDS: u64 = 10_800;
const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BODY: usize = 64 * 1024;
const RETRY: Duration = Duration::from_secs(30);

const MUTATION: &str = "mutation WorkerLogToken($input: IssueTaskIdentityTokenInput!) { \
issueTaskIdentityToken(requestContext: {osContext: {}, clientContext: {}}, input: $input) { \
__typename ... on IssueTaskIdentityTokenOutput { token expiresAt } } }";

/// The GraphQL request body.
pub fn request_body() -> String {
    serde_json::json!({
        "query": MUTATION,
        "variables": {"input": {
            "audience": AUDIENCE,
            "requestedDurationSeconds": REQUESTED_SECONDS,
        }},
    })
    .to_string()
}

/// The token and its expiry from a 200 answer, or why it is unusable (never the body).
pub fn parse_answer(body: &[u8], now: SystemTime) -> Result<(String, SystemTime), &'static str> {
    // Read as a plain `Value`: these few fields do not earn derived deserializers' bytes.
    let r: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "invalid task identity response")?;
    if r["errors"].as_array().is_some_and(|e| !e.is_empty()) {
        return Err("task identity token unavailable");
    }
    let issued = &r["data"]["issueTaskIdentityToken"];
    let text = |key: &str| issued[key].as_str().unwrap_or_default();
    let expires = parse_rfc3339(text("expiresAt")).ok_or("invalid task identity response")?;
    let token = text("token");
    if text("__typename") != "IssueTaskIdentityTokenOutput" || token.is_empty() || expires <= now {
        return Err("task identity token unavailable");
    }
    Ok((token.to_owned(), expires))
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = (i - start).min(9);
        if digits == 0 {
            return None;
        }
        nanos *= 10u64.pow(9 - u32::try_from(digits).ok()?);
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// When to refresh a token that expires at `expires`, seen at `now`.
pub fn refresh_at(now: SystemTime, expires: SystemTime) -> SystemTime {
    let ttl = expires.duration_since(now).unwrap_or_default();
    expires - (ttl / 5).min(Duration::from_secs(60))
}

/// Issues and caches the task's export tokens.
pub struct IdentityTokens {
    url: String,
    run_id: String,
    creds: TaskCredentials,
    transport: Arc<dyn Transport>,
    redactor: Arc<TaskRedactor>,
    token: Option<(String, SystemTime)>,
    refresh: SystemTime,
    /// Keeps the issued tokens in the process-wide redactor while the task runs.
    _guards: Vec<crate::redact::Guard>,
}

impl IdentityTokens {
    pub fn new(
        url: String,
        run_id: String,
        creds: TaskCredentials,
        transport: Arc<dyn Transport>,
        redactor: Arc<TaskRedactor>,
    ) -> IdentityTokens {
        IdentityTokens {
            url,
            run_id,
            creds,
            transport,
            redactor,
            token: None,
            refresh: UNIX_EPOCH,
            _guards: Vec::new(),
        }
    }

    fn issue(&self) -> Result<(String, SystemTime), SendError> {
        let mut headers = vec![
            (
                "Authorization".to_owned(),
                format!("Bearer {}", self.creds.api_key),
            ),
            ("X-Warp-Cloud-Agent-ID".to_owned(), self.run_id.clone()),
        ];
        if let Some(w) = &self.creds.workload_token {
            headers.push(("X-Warp-Ambient-Workload-Token".to_owned(), w.clone()));
        }
        let reply = self.transport.post(&Request {
            url: self.url.clone(),
            content_type: "application/json",
            headers,
            body: request_body().into_bytes(),
            timeout: TIMEOUT,
            keep_body: MAX_BODY,
        })?;
        if reply.status != 200 {
            return Err(SendError(format!(
                "task identity request rejected (HTTP {})",
                reply.status
            )));
        }
        parse_answer(&reply.body, SystemTime::now()).map_err(|e| SendError(e.to_owned()))
    }
}

impl Bearer for IdentityTokens {
    fn bearer(&mut self) -> Result<String, SendError> {
        let now = SystemTime::now();
        if let Some((token, _)) = &self.token
            && now < self.refresh
        {
            return Ok(token.clone());
        }
        match self.issue() {
            Ok((token, expires)) => {
                self.redactor.add(&token);
                self._guards.push(crate::redact::register([token.as_str()]));
                self.refresh = refresh_at(now, expires);
                self.token = Some((token.clone(), expires));
                Ok(token)
            }
            Err(e) => match &self.token {
                // A failed refresh keeps a token that is still valid.
                Some((token, expires)) if now < *expires => {
                    self.refresh = (now + RETRY).min(*expires);
                    Ok(token.clone())
                }
                _ => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        let t = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(
            t("2023-11-14T22:13:20.5Z"),
            Some(Duration::from_millis(1_700_000_000_500))
        );
        assert_eq!(
            t("2023-11-14T23:13:20+01:00"),
            Some(Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            t("2023-11-14T22:13:20.123456789123Z"),
            Some(Duration::from_nanos(1_700_000_000_123_456_789))
        );
        for bad in [
            "",
            "2023-11-14",
            "2023-13-14T00:00:00Z",
            "2023-11-14T00:00:00",
            "x",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn answers() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ok = br#"{"data":{"issueTaskIdentityToken":{"__typename":"IssueTaskIdentityTokenOutput","token":"t","expiresAt":"2023-11-15T00:00:00Z"}}}"#;
        let (tok, _) = parse_answer(ok, now).unwrap();
        assert_eq!(tok, "t");
        for bad in [
            &br#"{"data":{"issueTaskIdentityToken":{"__typename":"UserFacingError","token":"t","expiresAt":"2023-11-15T00:00:00Z"}}}"#[..],
            br#"{"data":{"issueTaskIdentityToken":{"__typename":"IssueTaskIdentityTokenOutput","token":"","expiresAt":"2023-11-15T00:00:00Z"}}}"#,
            br#"{"data":{"issueTaskIdentityToken":{"__typename":"IssueTaskIdentityTokenOutput","token":"t","expiresAt":"2023-11-14T00:00:00Z"}}}"#,
            br#"{"errors":[{"message":"no"}],"data":null}"#,
            b"<html>",
        ] {
            assert!(parse_answer(bad, now).is_err());
        }
    }

    #[test]
    fn refresh_margin() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            refresh_at(now, now + Duration::from_secs(3 * 3600)),
            now + Duration::from_secs(3 * 3600 - 60)
        );
        assert_eq!(
            refresh_at(now, now + Duration::from_secs(100)),
            now + Duration::from_secs(80)
        );
    }

    #[test]
    fn body_names_audience_and_duration() {
        let v: serde_json::Value = serde_json::from_str(&request_body()).unwrap();
        assert_eq!(v["variables"]["input"]["audience"], AUDIENCE);
        assert_eq!(v["variables"]["input"]["requestedDurationSeconds"], 10_800);
        assert!(
            v["query"]
                .as_str()
                .unwrap()
                .contains("issueTaskIdentityToken")
        );
    }
}
