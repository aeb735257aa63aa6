//! [`FakeMarathon`]: a Marathon REST API server for the `marathon` namer's tests.
//!
//! Marathon (with the Mesos cluster under it) cannot be installed here, so this server
//! follows Marathon's documented REST API for the two endpoints the namer uses, with bodies
//! shaped like the documentation's examples:
//! - `GET /v2/apps?embed=apps.tasks`: `{"apps": [{"id", "healthChecks", "tasks": [{"id",
//!   "appId", "host", "ports", "state", "ipAddresses", "healthCheckResults"}]}]}`; tasks are
//!   embedded only when `embed=apps.tasks` is asked for, as in Marathon;
//! - `GET /v2/events` with `Accept: text/event-stream`: a server-sent event stream that stays
//!   open, starts with `event_stream_attached`, and carries `status_update_event`,
//!   `health_status_changed_event` and `app_terminated_event` events as apps change (each
//!   `event: <type>` then `data: <json>` with the documented fields, then a blank line).
//!
//! With a credential set, every request without `Authorization: Basic <credential>` gets 401
//! with `WWW-Authenticate: Basic realm="Mesosphere Marathon"`, as Marathon's basic auth
//! plugin answers. As a DC/OS cluster, it also serves the IAM login
//! (`POST /acs/api/v1/auth/login` with `{"uid", "token"}`, answered `{"token"}`) and wants
//! `Authorization: token=<token>` (401 with `WWW-Authenticate: acsjwt` otherwise); it records
//! the login JWTs for the test to verify, and can expire the token on cue. On cue it answers 500, malformed JSON, or never; cuts its event streams;
//! or goes away entirely and comes back on the same port.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A fake Marathon on `127.0.0.1`, port chosen at start; stops on drop.
pub struct FakeMarathon {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
}

/// How `/v2/apps` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppsAnswer {
    /// The apps as set.
    Normal,
    /// `500 Internal Server Error`.
    ServerError,
    /// `200` with a body cut in the middle of the JSON.
    Malformed,
    /// `200` with JSON of the wrong shape (a task port out of range).
    WrongShape,
    /// Reads the request and never answers.
    Never,
    /// `200` with a body of 17 MiB (whitespace inside valid JSON).
    Oversized,
}

/// One task of an app.
#[derive(Clone, Debug)]
pub struct FakeTask {
    /// The task id, e.g. `web.1`.
    pub id: String,
    /// The agent host, a name or an IP literal.
    pub host: String,
    /// The task's first host port.
    pub port: u16,
    /// The Mesos state, `TASK_RUNNING` unless set.
    pub state: String,
    /// The health check result: `None` for no result (not checked yet).
    pub alive: Option<bool>,
}

impl FakeTask {
    /// A running task at `addr` with no health check result.
    pub fn at(id: &str, addr: SocketAddr) -> FakeTask {
        FakeTask {
            id: id.to_owned(),
            host: addr.ip().to_string(),
            port: addr.port(),
            state: "TASK_RUNNING".to_owned(),
            alive: None,
        }
    }

    /// This task with a health check result.
    pub fn alive(mut self, alive: bool) -> FakeTask {
        self.alive = Some(alive);
        self
    }

    /// This task in another Mesos state (e.g. `TASK_STAGING`).
    pub fn state(mut self, state: &str) -> FakeTask {
        self.state = state.to_owned();
        self
    }

    /// This task on another host (e.g. `localhost`).
    pub fn host(mut self, host: &str) -> FakeTask {
        self.host = host.to_owned();
        self
    }

    fn json(&self, app: &str) -> Value {
        let mut t = json!({
            "id": self.id,
            "appId": app,
            "slaveId": "20140909-054127-177048842-5050-1494-0",
            "host": self.host,
            "ports": [self.port],
            "servicePorts": [10000],
            "state": self.state,
            "stagedAt": "2016-03-22T10:46:00.542Z",
            "startedAt": "2016-03-22T10:46:01.023Z",
            "version": "2016-03-22T10:45:59.844Z",
            "ipAddresses": [{"ipAddress": self.host, "protocol": "IPv4"}],
        });
        if let Some(alive) = self.alive {
            t["healthCheckResults"] = json!([{
                "alive": alive,
                "consecutiveFailures": if alive { 0 } else { 1 },
                "firstSuccess": "2016-03-22T10:46:05.120Z",
                "lastFailure": null,
                "lastSuccess": "2016-03-22T10:46:05.120Z",
                "taskId": self.id,
            }]);
        }
        t
    }
}

struct App {
    health_checks: bool,
    tasks: Vec<FakeTask>,
}

/// What the fake wants in `Authorization`.
enum Credential {
    None,
    Basic(String),
    /// A DC/OS service account `uid`; the token currently valid, if any.
    Dcos {
        uid: String,
        token: Mutex<Option<String>>,
    },
}

struct Shared {
    apps: Mutex<BTreeMap<String, App>>,
    answer: Mutex<AppsAnswer>,
    credential: Credential,
    logins: Mutex<Vec<String>>,
    streams: Mutex<Vec<mpsc::UnboundedSender<Bytes>>>,
    apps_reads: AtomicUsize,
    event_connections: AtomicUsize,
    authorizations: Mutex<Vec<Option<String>>>,
}

// === impl FakeMarathon ===

impl FakeMarathon {
    /// Starts a fake Marathon with no apps and no authentication.
    pub async fn start() -> FakeMarathon {
        FakeMarathon::start_with(None).await
    }

    /// Starts a fake Marathon that wants `Authorization: Basic <credential>` (`credential` is
    /// base64 of `user:password`, as in `MARATHON_HTTP_AUTH_CREDENTIAL`).
    pub async fn start_with(credential: Option<&str>) -> FakeMarathon {
        let credential = match credential {
            Some(c) => Credential::Basic(c.to_owned()),
            None => Credential::None,
        };
        FakeMarathon::start_as(credential).await
    }

    /// Starts a fake Marathon in a DC/OS cluster where service account `uid` may log in at
    /// `/acs/api/v1/auth/login` (any RS256 JWT naming `uid` is accepted: the test verifies
    /// the signatures itself, see [`FakeMarathon::logins`]).
    pub async fn start_dcos(uid: &str) -> FakeMarathon {
        FakeMarathon::start_as(Credential::Dcos {
            uid: uid.to_owned(),
            token: Mutex::new(None),
        })
        .await
    }

    async fn start_as(credential: Credential) -> FakeMarathon {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake marathon");
        let addr = listener.local_addr().expect("fake marathon addr");
        let shared = Arc::new(Shared {
            apps: Mutex::new(BTreeMap::new()),
            answer: Mutex::new(AppsAnswer::Normal),
            credential,
            logins: Mutex::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
            apps_reads: AtomicUsize::new(0),
            event_connections: AtomicUsize::new(0),
            authorizations: Mutex::new(Vec::new()),
        });
        let server = tokio::spawn(accept_loop(listener, shared.clone()));
        FakeMarathon {
            addr,
            shared,
            server: Mutex::new(Some(server)),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Creates or replaces app `id` (e.g. `/web`), with health checks defined or not, and
    /// sends a `status_update_event` per task on every open event stream (one `TASK_KILLED`
    /// update when the app has no task left).
    pub fn set_app(&self, id: &str, health_checks: bool, tasks: Vec<FakeTask>) {
        self.set_app_quietly(id, health_checks, tasks.clone());
        for t in &tasks {
            self.send_event(
                "status_update_event",
                json!({
                    "eventType": "status_update_event",
                    "timestamp": "2016-03-22T10:46:01.100Z",
                    "slaveId": "20140909-054127-177048842-5050-1494-0",
                    "taskId": t.id,
                    "taskStatus": t.state,
                    "message": "",
                    "appId": id,
                    "host": t.host,
                    "ipAddresses": [{"ipAddress": t.host, "protocol": "IPv4"}],
                    "ports": [t.port],
                    "version": "2016-03-22T10:45:59.844Z",
                }),
            );
        }
        if tasks.is_empty() {
            self.send_event(
                "status_update_event",
                json!({
                    "eventType": "status_update_event",
                    "timestamp": "2016-03-22T10:46:01.100Z",
                    "taskId": format!("{}.gone", id.trim_start_matches('/')),
                    "taskStatus": "TASK_KILLED",
                    "appId": id,
                    "host": "127.0.0.1",
                    "ports": [],
                    "version": "2016-03-22T10:45:59.844Z",
                }),
            );
        }
    }

    /// As [`FakeMarathon::set_app`], but without any event: only a read of `/v2/apps` sees it.
    pub fn set_app_quietly(&self, id: &str, health_checks: bool, tasks: Vec<FakeTask>) {
        self.shared.apps.lock().expect("apps lock").insert(
            id.to_owned(),
            App {
                health_checks,
                tasks,
            },
        );
    }

    /// Sends a `health_status_changed_event` for `task` of `app` after changing its result.
    pub fn set_alive(&self, app: &str, task: &str, alive: bool) {
        {
            let mut apps = self.shared.apps.lock().expect("apps lock");
            let t = apps
                .get_mut(app)
                .and_then(|a| a.tasks.iter_mut().find(|t| t.id == task))
                .expect("no such task");
            t.alive = Some(alive);
        }
        self.send_event(
            "health_status_changed_event",
            json!({
                "eventType": "health_status_changed_event",
                "timestamp": "2016-03-22T10:46:10.000Z",
                "appId": app,
                "taskId": task,
                "instanceId": task,
                "version": "2016-03-22T10:45:59.844Z",
                "alive": alive,
            }),
        );
    }

    /// Removes app `id` and sends an `app_terminated_event`.
    pub fn remove_app(&self, id: &str) {
        self.shared.apps.lock().expect("apps lock").remove(id);
        self.send_event(
            "app_terminated_event",
            json!({
                "eventType": "app_terminated_event",
                "appId": id,
                "timestamp": "2016-03-22T10:47:00.000Z",
            }),
        );
    }

    /// How `/v2/apps` answers from now on.
    pub fn set_answer(&self, answer: AppsAnswer) {
        *self.shared.answer.lock().expect("answer lock") = answer;
    }

    /// Ends every open event stream (the responses end; the connections close).
    pub fn cut_events(&self) {
        self.shared.streams.lock().expect("streams lock").clear();
    }

    /// Stops listening and closes every connection: connections are refused until
    /// [`FakeMarathon::restart`].
    pub fn stop(&self) {
        if let Some(server) = self.server.lock().expect("server lock").take() {
            server.abort();
        }
        self.cut_events();
    }

    /// Listens again on the same port after [`FakeMarathon::stop`].
    pub async fn restart(&self) {
        self.stop();
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind fake marathon on its port");
        let server = tokio::spawn(accept_loop(listener, self.shared.clone()));
        *self.server.lock().expect("server lock") = Some(server);
    }

    /// `GET /v2/apps` requests received (answered or not).
    pub fn apps_reads(&self) -> usize {
        self.shared.apps_reads.load(Ordering::SeqCst)
    }

    /// `GET /v2/events` streams opened so far.
    pub fn event_connections(&self) -> usize {
        self.shared.event_connections.load(Ordering::SeqCst)
    }

    /// Event streams open now.
    pub fn open_streams(&self) -> usize {
        let mut streams = self.shared.streams.lock().expect("streams lock");
        streams.retain(|s| !s.is_closed());
        streams.len()
    }

    /// The `Authorization` header of every request so far, in order.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.shared
            .authorizations
            .lock()
            .expect("authorizations lock")
            .clone()
    }

    /// The JWTs of the DC/OS logins so far, in order.
    pub fn logins(&self) -> Vec<String> {
        self.shared.logins.lock().expect("logins lock").clone()
    }

    /// Makes the DC/OS token issued last invalid: requests with it get 401.
    pub fn expire_token(&self) {
        if let Credential::Dcos { token, .. } = &self.shared.credential {
            *token.lock().expect("token lock") = None;
        }
    }

    fn send_event(&self, event: &str, data: Value) {
        let frame = Bytes::from(format!("event: {event}\r\ndata: {data}\r\n\r\n"));
        let mut streams = self.shared.streams.lock().expect("streams lock");
        streams.retain(|s| s.send(frame.clone()).is_ok());
    }
}

impl Drop for FakeMarathon {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    crate::serve::accept_loop(listener, shared, handle).await;
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<FakeBody>, Infallible> {
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    shared
        .authorizations
        .lock()
        .expect("authorizations lock")
        .push(auth.clone());
    if req.uri().path() == LOGIN_PATH {
        return Ok(login(req, &shared).await);
    }
    let refused = match &shared.credential {
        Credential::None => None,
        Credential::Basic(cred) => (auth.as_deref() != Some(&format!("Basic {cred}")))
            .then_some("Basic realm=\"Mesosphere Marathon\""),
        Credential::Dcos { token, .. } => {
            let token = token.lock().expect("token lock").clone();
            let sent = auth.as_deref().and_then(|a| a.strip_prefix("token="));
            (token.is_none() || sent != token.as_deref()).then_some("acsjwt")
        }
    };
    if let Some(challenge) = refused {
        return Ok(Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("www-authenticate", challenge)
            .header("content-type", "application/json")
            .body(FakeBody::full(
                r#"{"message":"Invalid username or password."}"#,
            ))
            .expect("valid response"));
    }
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    match path {
        "/v2/apps" => Ok(apps(&shared, query.split('&').any(|q| q == "embed=apps.tasks")).await),
        "/v2/events" => {
            shared.event_connections.fetch_add(1, Ordering::SeqCst);
            let (tx, rx) = mpsc::unbounded_channel();
            let attached = json!({
                "remoteAddress": "127.0.0.1",
                "eventType": "event_stream_attached",
                "timestamp": "2016-03-22T10:45:00.000Z",
            });
            let _ = tx.send(Bytes::from(format!(
                ": marathon fake\r\nevent: event_stream_attached\r\ndata: {attached}\r\n\r\n"
            )));
            shared.streams.lock().expect("streams lock").push(tx);
            Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .body(FakeBody::Stream(rx))
                .expect("valid response"))
        }
        _ => Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(FakeBody::full(r#"{"message":"Not found"}"#))
            .expect("valid response")),
    }
}

/// DC/OS IAM's service account login path.
const LOGIN_PATH: &str = "/acs/api/v1/auth/login";

/// `POST /acs/api/v1/auth/login` with `{"uid", "token"}`: a new token for the account.
async fn login(req: Request<Incoming>, shared: &Shared) -> Response<FakeBody> {
    let refuse = |why: &str| {
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("content-type", "application/json")
            .body(FakeBody::full(
                json!({"title": "Invalid authentication credentials", "description": why})
                    .to_string(),
            ))
            .expect("valid response")
    };
    let Credential::Dcos { uid, token } = &shared.credential else {
        return refuse("not a DC/OS cluster");
    };
    if req.method() != http::Method::POST {
        return refuse("POST expected");
    }
    let Ok(body) = http_body_util::BodyExt::collect(req.into_body()).await else {
        return refuse("unreadable body");
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return refuse("not JSON");
    };
    let (Some(got_uid), Some(jwt)) = (v["uid"].as_str(), v["token"].as_str()) else {
        return refuse("uid and token expected");
    };
    shared
        .logins
        .lock()
        .expect("logins lock")
        .push(jwt.to_owned());
    if got_uid != uid || jwt.split('.').count() != 3 {
        return refuse("unknown uid or not a JWT");
    }
    let n = shared.logins.lock().expect("logins lock").len();
    let issued = format!("fake-dcos-token-{n}");
    *token.lock().expect("token lock") = Some(issued.clone());
    Response::builder()
        .header("content-type", "application/json")
        .body(FakeBody::full(json!({ "token": issued }).to_string()))
        .expect("valid response")
}

async fn apps(shared: &Shared, embed_tasks: bool) -> Response<FakeBody> {
    shared.apps_reads.fetch_add(1, Ordering::SeqCst);
    let answer = *shared.answer.lock().expect("answer lock");
    let body = match answer {
        AppsAnswer::Never => std::future::pending().await,
        AppsAnswer::ServerError => {
            return Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body(FakeBody::full(
                    r#"{"message":"An unexpected server error occurred."}"#,
                ))
                .expect("valid response")
        }
        AppsAnswer::Malformed => r#"{"apps": [{"id": "/web", "tasks": [{"host": "#.to_owned(),
        AppsAnswer::Oversized => format!("{{\"apps\": [{}]}}", " ".repeat(17 << 20)),
        AppsAnswer::WrongShape => {
            r#"{"apps": [{"id": "/web", "tasks": [{"host": "127.0.0.1", "ports": [70000]}]}]}"#
                .to_owned()
        }
        AppsAnswer::Normal => {
            let apps = shared.apps.lock().expect("apps lock");
            let list: Vec<Value> = apps
                .iter()
                .map(|(id, app)| {
                    let mut a = json!({
                        "id": id,
                        "cmd": "python3 -m http.server $PORT0",
                        "instances": app.tasks.len(),
                        "cpus": 0.1,
                        "mem": 64.0,
                        "healthChecks": [],
                        "tasksRunning": app.tasks.iter().filter(|t| t.state == "TASK_RUNNING").count(),
                        "version": "2016-03-22T10:45:59.844Z",
                    });
                    if app.health_checks {
                        a["healthChecks"] = json!([{
                            "protocol": "HTTP",
                            "path": "/",
                            "portIndex": 0,
                            "gracePeriodSeconds": 5,
                            "intervalSeconds": 10,
                            "timeoutSeconds": 10,
                            "maxConsecutiveFailures": 3,
                        }]);
                    }
                    if embed_tasks {
                        a["tasks"] = app.tasks.iter().map(|t| t.json(id)).collect();
                    }
                    a
                })
                .collect();
            json!({ "apps": list }).to_string()
        }
    };
    Response::builder()
        .header("content-type", "application/json")
        .body(FakeBody::full(body))
        .expect("valid response")
}

/// A whole body, or an event stream fed through a channel.
enum FakeBody {
    Full(Option<Bytes>),
    Stream(mpsc::UnboundedReceiver<Bytes>),
}

impl FakeBody {
    fn full(b: impl Into<Bytes>) -> FakeBody {
        FakeBody::Full(Some(b.into()))
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            FakeBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            FakeBody::Stream(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }
}
