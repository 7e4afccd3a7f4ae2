//! Endpoint health (`lodectl endpoint health`) and its outputs.

use super::*;

/// One endpoint's health, as etcdctl's `endpoint health` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointHealth {
    /// The endpoint as given (or a member's client URL with `--cluster`).
    pub endpoint: String,
    /// Healthy: the read succeeded and no alarm is active.
    pub health: bool,
    /// How long the check took (Go's duration form), empty when no connection was made.
    pub took: String,
    /// Why it is unhealthy (empty when healthy).
    pub error: String,
}

/// `endpoint health` in simple form: (standard output, standard error): healthy endpoints on
/// the first, unhealthy ones on the second, as etcdctl writes them.
pub fn simple_health(list: &[EndpointHealth]) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    for h in list {
        if h.error.is_empty() {
            let _ = writeln!(
                out,
                "{} is healthy: successfully committed proposal: took = {}",
                h.endpoint, h.took
            );
        } else {
            let _ = writeln!(
                err,
                "{} is unhealthy: failed to commit proposal: {}",
                h.endpoint, h.error
            );
        }
    }
    (out, err)
}

/// `endpoint health -w json`: etcdctl's list (`error` left out when empty).
pub fn json_health(list: &[EndpointHealth]) -> Value {
    Value::Array(
        list.iter()
            .map(|h| {
                let mut map = Map::new();
                map.insert("endpoint".into(), json!(h.endpoint));
                map.insert("health".into(), json!(h.health));
                map.insert("took".into(), json!(h.took));
                if !h.error.is_empty() {
                    map.insert("error".into(), json!(h.error));
                }
                Value::Object(map)
            })
            .collect(),
    )
}

/// `endpoint health -w table`.
pub fn table_health(list: &[EndpointHealth]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|h| {
            vec![
                h.endpoint.clone(),
                h.health.to_string(),
                h.took.clone(),
                h.error.clone(),
            ]
        })
        .collect();
    table(&["ENDPOINT", "HEALTH", "TOOK", "ERROR"], &rows)
}

/// `endpoint health -w fields`.
pub fn fields_health(list: &[EndpointHealth]) -> String {
    let mut out = String::new();
    for h in list {
        let _ = writeln!(out, "\"Endpoint\" : {}", go_quote(h.endpoint.as_bytes()));
        let _ = writeln!(out, "\"Health\" : {}", h.health);
        let _ = writeln!(out, "\"Took\" : {}", h.took);
        let _ = writeln!(out, "\"Error\" : {}\n", h.error);
    }
    out
}
