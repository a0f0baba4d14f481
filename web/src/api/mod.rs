//! `/auth/token` and `/api/v2`, with Airflow 3's paths, field names and status codes, and
//! `GET /api/v2/openapi.json`, generated (utoipa) from the same handlers and types, so the
//! document lists exactly the routes served.

mod absent;
mod backfills;
mod bulk;
mod bulk_runs;
mod config;
mod connections;
mod dag_details;
mod dag_globals;
mod dag_sources;
mod dag_versions;
mod dags;
mod event_logs;
mod favorites;
pub mod models;
mod pools;
pub mod query;
mod run_actions;
mod runs;
mod task_instances;
mod tasks;
pub mod unserved;
mod variables;

use std::sync::OnceLock;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Doc, RefOr, Schema};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{self, Viewer};
use crate::error::ApiError;
use models::{HTTPExceptionResponse, HTTPValidationError};
use query::NoQuery;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "upiflow API",
        description = "A subset of Apache Airflow 3's REST API (`/api/v2`), with its paths, \
            fields and status codes. Authenticate with a token from `POST /auth/token` \
            (`Authorization: Bearer ...`) or with HTTP Basic. Reading needs any user; \
            changing needs a role that may (viewer < user < op < admin, see the README).",
        version = "2"
    ),
    security(("HTTPBearer" = []), ("HTTPBasic" = [])),
    components(schemas(HTTPExceptionResponse, HTTPValidationError)),
    modifiers(&Security, &ResponsesRequireEveryField)
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "HTTPBearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "HTTPBasic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

/// Answers always carry every field (`null` when unknown), as Airflow's do; utoipa only
/// marks non-`Option` fields required, so every property of a non-body schema is marked.
struct ResponsesRequireEveryField;

impl Modify for ResponsesRequireEveryField {
    fn modify(&self, doc: &mut Doc) {
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        for (name, schema) in components.schemas.iter_mut() {
            if name.ends_with("Body") {
                continue;
            }
            if let RefOr::T(Schema::Object(o)) = schema {
                o.required = o.properties.keys().cloned().collect();
            }
        }
    }
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(token))
        .routes(routes!(token_cli))
        .routes(routes!(logout))
        .routes(routes!(version))
        .routes(routes!(health))
        .routes(routes!(openapi_json))
        .merge(dags::router())
        .merge(runs::router())
        .merge(run_actions::router())
        .merge(task_instances::router())
        .merge(backfills::router())
        .merge(pools::router())
        .merge(connections::router())
        .merge(variables::router())
        .merge(event_logs::router())
        .merge(tasks::router())
        .merge(dag_globals::router())
        .merge(absent::router())
        .merge(dag_details::router())
        .merge(dag_sources::router())
        .merge(dag_versions::router())
        .merge(favorites::router())
        .merge(config::router())
        .merge(bulk_runs::router())
}

/// The API's routes.
pub fn router() -> Router<AppState> {
    routes().split_for_parts().0.merge(unserved::router())
}

/// The OpenAPI document of [`router`], built once.
pub fn openapi() -> &'static Doc {
    static DOC: OnceLock<Doc> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = routes().split_for_parts().1;
        // The modifiers ran before the routers' schemas were merged in; run them again.
        Security.modify(&mut doc);
        ResponsesRequireEveryField.modify(&mut doc);
        doc
    })
}

/// This document.
#[utoipa::path(get, path = "/api/v2/openapi.json", tag = "Monitor",
    responses((status = 200, description = "The OpenAPI document of this API", body = Object),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn openapi_json(_: Viewer, _: NoQuery) -> impl IntoResponse {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| openapi().to_json().expect("the document serialises"));
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text.as_str(),
    )
}

/// A JSON body whose problems are a 422 with a message (as FastAPI answers), not a bare 400.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::TooLarge(format!(
                    "the body is larger than {} KiB",
                    crate::BODY_LIMIT / 1024
                )))
            }
            Err(e) => Err(ApiError::Unprocessable(e.body_text())),
        }
    }
}

/// Path parameters whose problems (say a backfill id that is no number) are a 422.
pub struct Ids<T>(pub T);

impl<S, T> FromRequestParts<S> for Ids<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Ids(v)),
            Err(e) => Err(ApiError::Unprocessable(e.body_text())),
        }
    }
}

pub fn check_page(limit: i64, offset: i64) -> Result<(i64, i64), ApiError> {
    if !(0..=1000).contains(&limit) || offset < 0 {
        return Err(ApiError::Unprocessable(
            "limit must be between 0 and 1000 and offset at least 0".into(),
        ));
    }
    Ok((limit, offset))
}

/// Airflow's `LoginBody`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

/// Airflow's `LoginResponse`.
#[derive(Serialize, ToSchema)]
struct LoginResponse {
    access_token: String,
}

/// A token for `Authorization: Bearer ...`, valid for a day.
#[utoipa::path(post, path = "/auth/token", tag = "Login", security(()),
    request_body = LoginBody,
    responses((status = 201, body = LoginResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn token(
    State(s): State<AppState>,
    client: crate::transport::Client,
    _: NoQuery,
    Body(login): Body<LoginBody>,
) -> Result<(StatusCode, Json<LoginResponse>), ApiError> {
    let grant = auth::sign_in(&s, &login.username, &login.password, client.addr)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let access_token = auth::issue_token(&s.token_key, &login.username, grant)?;
    Ok((StatusCode::CREATED, Json(LoginResponse { access_token })))
}

/// The token Airflow's remote CLI (`airflowctl auth login`) signs in for, with the simple
/// auth manager's path and shape (`POST /auth/token/cli`, `LoginBody` in, a 201 with
/// `LoginResponse` out, a 401 for a wrong password). The same sign-in as `/auth/token`: the
/// same throttle (`auth::sign_in`) and the same `login` audit event. Airflow gives CLI tokens
/// their own lifetime (`[api_auth] jwt_cli_expiration_time`); upiflow has one token
/// lifetime, a day, and `airflowctl` re-signs in when a token expires.
#[utoipa::path(post, path = "/auth/token/cli", tag = "Login", security(()),
    request_body = LoginBody,
    responses((status = 201, body = LoginResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError),
        (status = 429, body = HTTPExceptionResponse)))]
async fn token_cli(
    state: State<AppState>,
    client: crate::transport::Client,
    q: NoQuery,
    body: Body<LoginBody>,
) -> Result<(StatusCode, Json<LoginResponse>), ApiError> {
    token(state, client, q, body).await
}

/// Revokes every token and browser session of the signed-in user, in every web process at
/// once (Airflow's `/auth/logout` revokes the one token presented; this ends them all, as a
/// password change does). An API key is revoked with `upiflow tokens revoke` instead.
#[utoipa::path(post, path = "/auth/logout", tag = "Login",
    responses((status = 204, description = "Every token and session of the user is revoked"),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse)))]
async fn logout(
    State(s): State<AppState>,
    user: Viewer,
    _: NoQuery,
) -> Result<StatusCode, ApiError> {
    if user.api_key {
        return Err(ApiError::BadRequest(format!(
            "`{}` is an API key, which does not log out: revoke it with `upiflow tokens revoke \
             --name {}`",
            user.username, user.username
        )));
    }
    auth::revoke_tokens(&s.pool, &user.username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Airflow's `VersionInfo`.
#[derive(Serialize, ToSchema)]
struct VersionInfo {
    version: String,
    git_version: Option<String>,
}

/// The version of upiflow.
/// Public, as in Airflow (clients call it before they sign in).
#[utoipa::path(get, path = "/api/v2/version", tag = "Version", security(()),
    responses((status = 200, body = VersionInfo),
        (status = 422, body = HTTPValidationError)))]
async fn version(_: NoQuery) -> Json<VersionInfo> {
    Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        git_version: None,
    })
}

#[derive(Serialize, ToSchema)]
struct BaseInfoResponse {
    status: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct SchedulerInfoResponse {
    status: Option<String>,
    latest_scheduler_heartbeat: Option<String>,
}

/// upiflow has no triggerer: as Airflow answers when none ever ran, both fields are `null`.
#[derive(Serialize, ToSchema)]
struct TriggererInfoResponse {
    status: Option<String>,
    latest_triggerer_heartbeat: Option<String>,
}

/// upiflow's scheduler parses the DAG files itself and there is no separate DAG processor:
/// as Airflow answers when none ever ran, both fields are `null`.
#[derive(Serialize, ToSchema)]
struct DagProcessorInfoResponse {
    status: Option<String>,
    latest_dag_processor_heartbeat: Option<String>,
}

/// Airflow's `HealthInfoResponse`.
#[derive(Serialize, ToSchema)]
struct HealthInfoResponse {
    metadatabase: BaseInfoResponse,
    scheduler: SchedulerInfoResponse,
    triggerer: TriggererInfoResponse,
    dag_processor: Option<DagProcessorInfoResponse>,
}

/// A scheduler whose last loop ended longer ago than this is unhealthy (Airflow's
/// `scheduler_health_check_threshold`).
pub const SCHEDULER_HEALTH_THRESHOLD: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// How long the health check waits for the database before calling it unhealthy.
const DATABASE_HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

fn health_word(ok: bool) -> Option<String> {
    Some(if ok { "healthy" } else { "unhealthy" }.into())
}

/// The end of the newest scheduler loop (`scheduler_loops`, written by every scheduler on
/// every pass) and the database's clock, in one query; `Err` if the database did not answer
/// in time.
async fn scheduler_beat(
    pool: &sqlx::PgPool,
) -> Result<
    (
        Option<chrono::DateTime<chrono::Utc>>,
        chrono::DateTime<chrono::Utc>,
    ),
    (),
> {
    let query = async {
        let mut conn = pool.acquire().await?;
        upiflow_engine::store::scheduling::scheduler_beat(&mut conn).await
    };
    match tokio::time::timeout(DATABASE_HEALTH_TIMEOUT, query).await {
        Ok(Ok(row)) => Ok(row),
        Ok(Err(error)) => {
            let error = std::error::Error::source(&error)
                .map_or_else(|| error.to_string(), ToString::to_string);
            tracing::warn!(%error, "health: the metadatabase query failed");
            Err(())
        }
        Err(_) => {
            tracing::warn!("health: the metadatabase did not answer in time");
            Err(())
        }
    }
}

/// The health of each part, as Airflow reports it: the metadatabase answers a query (in 3 s);
/// the scheduler is healthy when some scheduler finished a loop in the last 30 s
/// (`latest_scheduler_heartbeat` is when); upiflow has no triggerer and no separate DAG
/// processor (`null`). Always a 200: the statuses say what is wrong.
/// Public, as in Airflow (load balancers and monitors probe it without credentials).
#[utoipa::path(get, path = "/api/v2/monitor/health", tag = "Monitor", security(()),
    responses((status = 200, body = HealthInfoResponse),
        (status = 422, body = HTTPValidationError)))]
async fn health(State(s): State<AppState>, _: NoQuery) -> Json<HealthInfoResponse> {
    let (db, beat, fresh) = match scheduler_beat(&s.pool).await {
        // Compared with the database's clock, which wrote `last_loop_at`.
        Ok((beat, now)) => (
            true,
            beat,
            beat.is_some_and(|b| now - b <= SCHEDULER_HEALTH_THRESHOLD),
        ),
        Err(()) => (false, None, false),
    };
    Json(HealthInfoResponse {
        metadatabase: BaseInfoResponse {
            status: health_word(db),
        },
        scheduler: SchedulerInfoResponse {
            status: health_word(fresh),
            latest_scheduler_heartbeat: beat
                .map(|b| b.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        },
        triggerer: TriggererInfoResponse {
            status: None,
            latest_triggerer_heartbeat: None,
        },
        dag_processor: Some(DagProcessorInfoResponse {
            status: None,
            latest_dag_processor_heartbeat: None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_schemas_as_airflow_and_requires_every_answer_field() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let ti = &doc["components"]["schemas"]["TaskInstanceResponse"];
        let required: Vec<&str> = ti["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(required.contains(&"state") && required.contains(&"dag_version"));
        for name in [
            "DAGResponse",
            "DAGRunResponse",
            "BackfillResponse",
            "BackfillPostBody",
        ] {
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
        // Bodies keep their optional fields optional.
        let body = &doc["components"]["schemas"]["ClearTaskInstancesBody"];
        assert!(body["required"].as_array().is_none_or(|r| r.is_empty()));
        // The token route needs no credentials; the others need a token or Basic.
        assert_eq!(
            doc["paths"]["/auth/token"]["post"]["security"],
            serde_json::json!([{}])
        );
        assert_eq!(
            doc["security"],
            serde_json::json!([{"HTTPBearer": []}, {"HTTPBasic": []}])
        );
    }
}
