//! Metric names and label keys, in one place.

/// Access-log requests, by `vhost`, `method` and `status_class`.
pub const REQUESTS: &str = "nginx_http_requests_total";
/// Access-log requests by bounded path pattern (`path`) and `status_class`.
pub const PATH_REQUESTS: &str = "nginx_http_path_requests_total";
/// Response bytes (`$body_bytes_sent`, else `$bytes_sent`), by `vhost`.
pub const RESPONSE_BYTES: &str = "nginx_http_response_bytes_total";
/// `$request_time` histogram, seconds, by `vhost`.
pub const REQUEST_DURATION: &str = "nginx_http_request_duration_seconds";
/// Distinct clients (HyperLogLog estimate) in the last complete window, by `vhost`, `window`.
pub const UNIQUE_VISITORS: &str = "nginx_http_unique_visitors";

/// Lines read, by `input`.
pub const LINES_READ: &str = "log_shipper_lines_read_total";
/// Bytes read, by `input`.
pub const BYTES_READ: &str = "log_shipper_read_bytes_total";
/// Events shipped cut short, by `input`: a line longer than `max_line_bytes`, or a multiline
/// event over its `max_lines` or `max_line_bytes` (each counted once, however many of its lines
/// were cut; the event carries `log.flags: truncated`).
pub const LINES_TRUNCATED: &str = "log_shipper_lines_truncated_total";
/// Lines that did not have the input's format (shipped as text), by `input`.
pub const PARSE_ERRORS: &str = "log_shipper_parse_errors_total";
/// Files whose content started over (copytruncate, rewrite, reused inode), by `input`.
pub const FILES_RESTARTED: &str = "log_shipper_files_restarted_total";
/// Files open for reading, by `input`.
pub const FILES_OPEN: &str = "log_shipper_files_open";
/// Bytes written to the input's files and not read yet, by `input`.
pub const LAG_BYTES: &str = "log_shipper_lag_bytes";
/// Events the output acknowledged, by `output`.
pub const EVENTS_SHIPPED: &str = "log_shipper_events_shipped_total";
/// Send attempts that failed and were retried, by `output`.
pub const SEND_RETRIES: &str = "log_shipper_send_retries_total";
/// Events the output refused for good (not retried), by `output`.
pub const EVENTS_DROPPED: &str = "log_shipper_events_dropped_total";
/// Registry writes that failed, retried with the next batch.
pub const REGISTRY_ERRORS: &str = "log_shipper_registry_write_errors_total";

/// Label: input name.
pub const INPUT: &str = "input";
/// Label: output kind.
pub const OUTPUT: &str = "output";
/// Label: virtual host.
pub const VHOST: &str = "vhost";
/// Label: request method.
pub const METHOD: &str = "method";
/// Label: `2xx` ...
pub const STATUS_CLASS: &str = "status_class";
/// Label: bounded path pattern.
pub const PATH: &str = "path";
/// Label: window length of the unique-visitor estimate (`5m`).
pub const WINDOW: &str = "window";

/// Describes every metric of this crate (HELP text and units) to the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        "Requests in the access logs, by virtual host, method and status class."
    );
    describe_counter!(
        PATH_REQUESTS,
        "Requests in the access logs, by path pattern and status class."
    );
    describe_counter!(
        RESPONSE_BYTES,
        Unit::Bytes,
        "Response bytes in the access logs."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Request time ($request_time) in the access logs."
    );
    describe_gauge!(
        UNIQUE_VISITORS,
        "Distinct clients in the access logs during the last complete window (HyperLogLog estimate, about 1% error)."
    );
    describe_counter!(LINES_READ, "Lines read from the inputs' files.");
    describe_counter!(
        BYTES_READ,
        Unit::Bytes,
        "Bytes read from the inputs' files."
    );
    describe_counter!(
        LINES_TRUNCATED,
        "Events shipped cut short: a line over max_line_bytes, or a multiline event over max_lines or max_line_bytes."
    );
    describe_counter!(
        PARSE_ERRORS,
        "Lines that did not have the input's format, shipped as text."
    );
    describe_counter!(
        FILES_RESTARTED,
        "Files whose content started over (copytruncate, rewrite, reused inode)."
    );
    describe_gauge!(FILES_OPEN, "Files open for reading.");
    describe_gauge!(
        LAG_BYTES,
        Unit::Bytes,
        "Bytes in the inputs' open files not read yet."
    );
    describe_counter!(EVENTS_SHIPPED, "Events the output acknowledged.");
    describe_counter!(SEND_RETRIES, "Send attempts that failed and were retried.");
    describe_counter!(EVENTS_DROPPED, "Events the output refused for good.");
    describe_counter!(REGISTRY_ERRORS, "Registry writes that failed.");
}
