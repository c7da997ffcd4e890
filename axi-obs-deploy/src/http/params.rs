//! Query parameters and JSON error answers shared by the routes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::event::in_range;

/// An error answer: `{"error": "..."}` with a status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A server-side failure: the detail is logged, the client gets a short message.
    pub(crate) fn internal(what: &str, detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(target: "axi_obs_deploy", error = %detail, "deploy routes: {what} failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{what} failed"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// Decoded `name=value` pairs of a query string, in order.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Rejects names outside `known`.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(ApiError::bad_request(format!(
                "unknown query parameter `{k}` (known: {})",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// The one value of `name`; an error if it is given twice.
    pub(crate) fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut found = self.0.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.as_str());
        if found.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter `{name}` given more than once"
            )));
        }
        Ok(first)
    }

    /// Every value of `name`.
    pub(crate) fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.one(name)?
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "query parameter `{name}`: `{v}` is not a valid number"
                    ))
                })
            })
            .transpose()
    }

    /// An instant: RFC 3339 or Unix milliseconds. A `+` offset sent unencoded (a query string
    /// reads `+` as a space: `...T10:00:00 02:00`) is read as the `+` it was.
    pub(crate) fn time(&self, name: &str) -> Result<Option<OffsetDateTime>, ApiError> {
        self.one(name)?
            .map(|v| {
                let t = match v.parse::<i64>() {
                    Ok(ms) => OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                        .ok(),
                    Err(_) => Some(parse_rfc3339(v).map_err(|e| {
                        ApiError::bad_request(format!(
                            "query parameter `{name}`: `{v}` is neither RFC 3339 nor Unix milliseconds ({e}; send a `+` offset as %2B)"
                        ))
                    })?),
                };
                t.filter(|t| in_range(*t)).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "query parameter `{name}`: `{v}` is outside the years 0001 to 9999"
                    ))
                })
            })
            .transpose()
    }

    pub(crate) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.one(name)? {
            None | Some("false" | "0") => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some(v) => Err(ApiError::bad_request(format!(
                "query parameter `{name}`: `{v}` is not true or false"
            ))),
        }
    }
}

/// RFC 3339, also when the `+` of an offset arrived as a space (`2026-05-01T10:00:00 02:00`).
fn parse_rfc3339(v: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(v, &Rfc3339).or_else(|e| {
        let Some((at, offset)) = v.rsplit_once(' ') else {
            return Err(e);
        };
        let looks_like_offset = offset.len() == 5
            && offset.as_bytes()[2] == b':'
            && offset
                .bytes()
                .enumerate()
                .all(|(i, b)| i == 2 || b.is_ascii_digit());
        if !looks_like_offset {
            return Err(e);
        }
        OffsetDateTime::parse(&format!("{at}+{offset}"), &Rfc3339).map_err(|_| e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_repeats_and_rejects_unknown_or_doubled_names() {
        let p = Params::parse(Some(
            "tags=a%20b&tags=c&since=2026-05-01T10%3A00%3A00Z&to=1000",
        ));
        assert_eq!(p.all("tags").collect::<Vec<_>>(), ["a b", "c"]);
        assert!(p.one("tags").is_err());
        assert_eq!(
            crate::event::unix_ms(p.time("since").unwrap().unwrap()),
            1_777_629_600_000
        );
        assert_eq!(crate::event::unix_ms(p.time("to").unwrap().unwrap()), 1000);
        let err = p.only(&["tags", "since"]).unwrap_err();
        assert!(err.message.contains("`to`"), "{}", err.message);
        assert!(
            Params::parse(Some("limit=x"))
                .number::<u32>("limit")
                .is_err()
        );
    }

    #[test]
    fn an_unencoded_plus_offset_is_read_as_plus() {
        let p = Params::parse(Some(
            "a=2026-05-01T12:00:00+02:00&b=2026-05-01T10:00:00Z&c=2026-05-01T12:00:00 02&d=x 02:00",
        ));
        let a = p.time("a").unwrap().unwrap();
        assert_eq!(a, p.time("b").unwrap().unwrap());
        for bad in ["c", "d"] {
            let e = p.time(bad).unwrap_err();
            assert!(e.message.contains("%2B"), "{}", e.message);
        }
    }
}
