//! The addresses of the UI's pages, built from ids (each path segment percent-encoded, so
//! run ids with `:` and `+` survive).

/// One path segment, percent-encoded (run ids carry `:` and `+`).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A connection's actions (`/connections/{id}/...`).
pub(super) fn connection_url(conn_id: &str, action: &str) -> String {
    format!("/connections/{}/{action}", seg(conn_id))
}

/// A variable's delete action.
pub(super) fn variable_delete_url(key: &str) -> String {
    format!("/variables/{}/delete", seg(key))
}

/// A DAG's grid page.
pub(super) fn dag_url(dag_id: &str) -> String {
    format!("/dags/{}", seg(dag_id))
}

/// A run's page.
pub(super) fn run_url(dag_id: &str, run_id: &str) -> String {
    format!("/dags/{}/runs/{}", seg(dag_id), seg(run_id))
}

/// A task instance's page.
pub(super) fn ti_url(dag_id: &str, run_id: &str, task_id: &str) -> String {
    format!(
        "/dags/{}/runs/{}/tasks/{}",
        seg(dag_id),
        seg(run_id),
        seg(task_id)
    )
}

/// A backfill's page.
pub(super) fn backfill_url(id: i64) -> String {
    format!("/backfills/{id}")
}

/// A URL with a query string built from `pairs` (values encoded).
pub(super) fn with_query(path: &str, pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    format!(
        "{path}?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_percent_encoded_in_paths() {
        assert_eq!(
            ti_url("d", "manual__2024-01-01T00:00:00+00:00", "a b"),
            "/dags/d/runs/manual__2024-01-01T00%3A00%3A00%2B00%3A00/tasks/a%20b"
        );
        assert_eq!(with_query("/x", &[]), "/x");
        assert_eq!(with_query("/x", &[("try", "2".into())]), "/x?try=2");
    }
}
