//! Marathon's `/v2/apps?embed=apps.tasks` response (Marathon REST API, "List all running
//! apps" with `embed=apps.tasks`), the part the namer reads, and which tasks are endpoints.

use std::collections::HashMap;

use serde::Deserialize;

/// The response body: `{"apps": [...]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct AppsResponse {
    pub(crate) apps: Vec<App>,
}

/// One app: its id (`/products/web`), its health checks and (embedded) tasks.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct App {
    pub(crate) id: String,
    /// The app's health check definitions; only their number matters here.
    #[serde(default)]
    pub(crate) health_checks: Vec<serde::de::IgnoredAny>,
    /// Present with `embed=apps.tasks`.
    #[serde(default)]
    pub(crate) tasks: Vec<Task>,
}

/// One task of an app.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Task {
    /// The agent the task runs on, a host name or an IP literal.
    pub(crate) host: String,
    /// The host ports given to the task, in the order of the app's port definitions; a port
    /// outside 0..=65535 makes the whole response malformed.
    #[serde(default)]
    pub(crate) ports: Vec<u16>,
    /// Mesos' task state (`TASK_RUNNING`, `TASK_STAGING`, ...); older Marathons omit it.
    #[serde(default)]
    pub(crate) state: Option<String>,
    /// The latest result of each of the app's health checks.
    #[serde(default)]
    pub(crate) health_check_results: Vec<HealthCheckResult>,
}

/// One health check's latest result for a task.
#[derive(Debug, Deserialize)]
pub(crate) struct HealthCheckResult {
    pub(crate) alive: bool,
}

/// Where one endpoint task runs: the agent host (name or IP literal) and its first port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TaskAddr {
    pub(crate) host: Box<str>,
    pub(crate) port: u16,
}

/// Every app id with the tasks that should receive traffic.
pub(crate) type Apps = HashMap<String, Vec<TaskAddr>>;

/// Parses a `/v2/apps?embed=apps.tasks` body and picks each app's endpoint tasks: tasks that
/// are running (state `TASK_RUNNING`, or no state given) with at least one port, reached at
/// `host:ports[0]` as Linkerd 1's `io.l5d.marathon` did. With `use_health_check`, a task must
/// also have every health check result alive, and at least one result when the app defines
/// health checks (a task not checked yet is not known to be healthy).
///
/// # Errors
/// The body is not JSON of that shape (wrong types, a port out of range), as a message.
pub(crate) fn parse_apps(body: &[u8], use_health_check: bool) -> Result<Apps, String> {
    let resp: AppsResponse =
        serde_json::from_slice(body).map_err(|e| format!("malformed /v2/apps response: {e}"))?;
    let mut apps = Apps::with_capacity(resp.apps.len());
    for app in resp.apps {
        let checked = !app.health_checks.is_empty();
        let mut tasks: Vec<TaskAddr> = app
            .tasks
            .into_iter()
            .filter(|t| t.state.as_deref().is_none_or(|s| s == "TASK_RUNNING"))
            .filter(|t| {
                !use_health_check
                    || (t.health_check_results.iter().all(|r| r.alive)
                        && !(checked && t.health_check_results.is_empty()))
            })
            .filter_map(|t| {
                let port = *t.ports.first()?;
                (port != 0 && !t.host.is_empty()).then(|| TaskAddr {
                    host: t.host.into(),
                    port,
                })
            })
            .collect();
        tasks.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
        tasks.dedup();
        apps.insert(app.id, tasks);
    }
    Ok(apps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like the example response of Marathon's REST API documentation.
    const BODY: &str = r#"{"apps": [{
        "id": "/products/web", "cmd": "python3 -m http.server 8080", "instances": 3,
        "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0}],
        "tasks": [
          {"id": "products_web.1", "appId": "/products/web", "host": "10.0.0.1",
           "ports": [31000, 31001], "state": "TASK_RUNNING",
           "ipAddresses": [{"ipAddress": "172.17.0.2", "protocol": "IPv4"}],
           "healthCheckResults": [{"alive": true, "consecutiveFailures": 0}]},
          {"id": "products_web.2", "host": "agent-2.example", "ports": [31002],
           "state": "TASK_RUNNING", "healthCheckResults": [{"alive": false}]},
          {"id": "products_web.3", "host": "10.0.0.3", "ports": [31003],
           "state": "TASK_RUNNING", "healthCheckResults": []},
          {"id": "products_web.4", "host": "10.0.0.4", "ports": [31004],
           "state": "TASK_STAGING"},
          {"id": "products_web.5", "host": "10.0.0.5", "ports": []}
        ]},
        {"id": "/idle", "tasks": []},
        {"id": "/nochecks", "tasks": [{"host": "10.0.0.9", "ports": [1]}]}
    ]}"#;

    fn addrs(apps: &Apps, id: &str) -> Vec<String> {
        apps[id]
            .iter()
            .map(|t| format!("{}:{}", t.host, t.port))
            .collect()
    }

    #[test]
    fn running_tasks_with_a_port_are_endpoints() {
        let apps = parse_apps(BODY.as_bytes(), false).unwrap();
        assert_eq!(
            addrs(&apps, "/products/web"),
            ["10.0.0.1:31000", "10.0.0.3:31003", "agent-2.example:31002"]
        );
        assert!(apps["/idle"].is_empty());
        assert_eq!(addrs(&apps, "/nochecks"), ["10.0.0.9:1"]);
    }

    #[test]
    fn health_checks_filter_when_asked() {
        let apps = parse_apps(BODY.as_bytes(), true).unwrap();
        assert_eq!(addrs(&apps, "/products/web"), ["10.0.0.1:31000"]);
        // An app without health checks: tasks without results pass.
        assert_eq!(addrs(&apps, "/nochecks"), ["10.0.0.9:1"]);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            "",
            "{}",
            "[]",
            r#"{"apps": {}}"#,
            r#"{"apps": [{"id": 7}]}"#,
            r#"{"apps": [{"id": "/a", "tasks": [{"host": "h", "ports": [70000]}]}]}"#,
            r#"{"apps": [{"id": "/a", "tasks": [{"host": "h", "ports": ["80"]}]}]}"#,
            r#"{"apps": [{"id": "/a", "tasks": [{"host": "h", "healthCheckResults": [{}]}]}]}"#,
        ] {
            let e = parse_apps(body.as_bytes(), false).unwrap_err();
            assert!(e.starts_with("malformed /v2/apps response"), "{body}: {e}");
        }
    }
}
