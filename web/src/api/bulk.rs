//! Airflow 3's bulk operations (`PATCH /api/v2/pools`, `/connections`, `/variables`): one
//! body of actions (`create`, `update`, `delete`), each over a list of entities, answered with
//! the keys each action changed and the errors it met (`BulkResponse`).
//!
//! As Airflow's `BulkService` does, a request is not one transaction: actions apply in
//! order, and each entity's change is the same engine call (its own transaction) as the
//! single route's. Before anything is written, every entity is checked as the single route's
//! body is (a bad one is a 422 for the whole request, as pydantic refuses it in Airflow).
//! Then an action whose `action_on_existence` / `action_on_non_existence` is `fail` and
//! that meets an existing (create) or missing (update, delete) key changes nothing and
//! reports one error naming them all (Airflow's 409 / 404 `detail` with its `status_code`);
//! `skip` leaves those out, and `overwrite` replaces what exists. An entity whose own change
//! fails after that (a race with another writer, a pool that may not be deleted) is one error
//! of its action; the other entities still apply. Errors carry messages only, never a value.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;

/// One kind of entity the bulk route changes (a pool, a connection, a variable), by the
/// same calls as its single routes.
pub trait Entity: Sync {
    /// The body of one entity (Airflow's `PoolBody`, `ConnectionBody`, `VariableBody`).
    type Body: DeserializeOwned + Send + Sync;
    /// Airflow's words for several of them: `pools with these pool names`.
    const PLURAL: &'static str;
    /// The entity's key.
    fn key(b: &Self::Body) -> String;
    /// Refuses a body the single route would refuse (or a mask naming no field), before
    /// anything is written.
    fn check(b: &Self::Body, mask: Option<&[String]>) -> Result<(), ApiError>;
    /// Refuses a key the single route would refuse (a deleted entity given by key).
    fn check_key(key: &str) -> Result<(), ApiError>;
    fn exists(s: &AppState, key: &str) -> impl Future<Output = Result<bool, ApiError>> + Send;
    fn create(s: &AppState, b: &Self::Body) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Replaces every field of the existing entity (create's `overwrite`).
    fn replace(s: &AppState, b: &Self::Body) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Changes the fields of the existing entity the body gives, or with `mask` those named.
    fn update(
        s: &AppState,
        b: &Self::Body,
        mask: Option<&[String]>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn delete(s: &AppState, key: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// Airflow's `BulkActionOnExistence`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExistence {
    #[default]
    Fail,
    Skip,
    Overwrite,
}

/// Airflow's `BulkActionNotOnExistence`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnNonExistence {
    #[default]
    Fail,
    Skip,
}

/// A deleted entity: its key, or its body (whose key is taken).
pub enum KeyOr<T> {
    Key(String),
    Entity(T),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for KeyOr<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(k) => Ok(KeyOr::Key(k)),
            v @ Value::Object(_) => T::deserialize(v)
                .map(KeyOr::Entity)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "entities: `{other}` is neither a key (a string) nor an entity (an object)"
            ))),
        }
    }
}

/// One action of Airflow's `BulkBody[...]`.
#[derive(Deserialize)]
#[serde(
    tag = "action",
    rename_all = "snake_case",
    deny_unknown_fields,
    bound(deserialize = "T: DeserializeOwned")
)]
pub enum Action<T> {
    Create {
        entities: Vec<T>,
        #[serde(default)]
        action_on_existence: OnExistence,
    },
    Update {
        entities: Vec<T>,
        #[serde(default)]
        update_mask: Option<Vec<String>>,
        #[serde(default)]
        action_on_non_existence: OnNonExistence,
    },
    Delete {
        entities: Vec<KeyOr<T>>,
        #[serde(default)]
        action_on_non_existence: OnNonExistence,
    },
}

/// Airflow's `BulkBody[...]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "T: DeserializeOwned"))]
pub struct BulkBody<T> {
    pub actions: Vec<Action<T>>,
}

/// Airflow's `BulkActionResponse`: the keys changed, and one object per error
/// (`{"error": ..., "status_code": ...}`, as Airflow's).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct BulkActionResponse {
    pub success: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<Value>,
}

/// Airflow's `BulkResponse`: `null` for an action type the request did not ask for.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct BulkResponse {
    pub create: Option<BulkActionResponse>,
    pub update: Option<BulkActionResponse>,
    pub delete: Option<BulkActionResponse>,
}

fn error_entry(e: &ApiError) -> Value {
    json!({"error": e.to_string(), "status_code": e.status().as_u16()})
}

impl BulkActionResponse {
    /// Records one entity's outcome; a server-side failure (the database gone) ends the
    /// request instead (what applied so far stays applied, as in Airflow).
    fn record(&mut self, key: String, outcome: Result<(), ApiError>) -> Result<(), ApiError> {
        match outcome {
            Ok(()) => self.success.push(key),
            Err(e) if e.status().is_server_error() => return Err(e),
            Err(e) => self.errors.push(error_entry(&e)),
        }
        Ok(())
    }
}

/// Refuses a request with an entity twice in one action (Airflow applies it twice; here
/// which one wins would be arbitrary), and checks every entity and key.
fn check_all<E: Entity>(body: &BulkBody<E::Body>) -> Result<(), ApiError> {
    for (i, action) in body.actions.iter().enumerate() {
        let keys: Vec<String> = match action {
            Action::Create { entities, .. } => {
                for b in entities {
                    E::check(b, None)?;
                }
                entities.iter().map(E::key).collect()
            }
            Action::Update {
                entities,
                update_mask,
                ..
            } => {
                for b in entities {
                    E::check(b, update_mask.as_deref())?;
                }
                entities.iter().map(E::key).collect()
            }
            Action::Delete { entities, .. } => {
                let mut keys = Vec::new();
                for e in entities {
                    match e {
                        KeyOr::Key(k) => {
                            E::check_key(k)?;
                            keys.push(k.clone());
                        }
                        KeyOr::Entity(b) => keys.push(E::key(b)),
                    }
                }
                keys
            }
        };
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = keys.iter().find(|k| !seen.insert(k.as_str())) {
            return Err(ApiError::Unprocessable(format!(
                "actions[{i}]: `{twice}` is given twice in one action"
            )));
        }
    }
    Ok(())
}

/// Which of `keys` exist.
async fn existing<E: Entity>(s: &AppState, keys: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for k in keys {
        if E::exists(s, k).await? {
            out.push(k.clone());
        }
    }
    Ok(out)
}

/// The keys as Airflow's message shows its set of them: `{'a', 'b'}`.
fn names(keys: &[String]) -> String {
    format!(
        "{{{}}}",
        keys.iter()
            .map(|k| format!("'{k}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Applies `body`'s actions in order (see the module's comment).
pub async fn apply<E: Entity>(
    s: &AppState,
    body: BulkBody<E::Body>,
) -> Result<BulkResponse, ApiError> {
    check_all::<E>(&body)?;
    let mut out = BulkResponse::default();
    for action in body.actions {
        match action {
            Action::Create {
                entities,
                action_on_existence,
            } => {
                let r = out.create.get_or_insert_with(Default::default);
                let keys: Vec<String> = entities.iter().map(E::key).collect();
                let found = existing::<E>(s, &keys).await?;
                if action_on_existence == OnExistence::Fail && !found.is_empty() {
                    // Airflow's `handle_bulk_create`: the whole action is refused.
                    r.errors.push(error_entry(&ApiError::Conflict(format!(
                        "The {} {} already exist.",
                        E::PLURAL,
                        names(&found)
                    ))));
                    continue;
                }
                for b in &entities {
                    let key = E::key(b);
                    let outcome = if !found.contains(&key) {
                        E::create(s, b).await
                    } else if action_on_existence == OnExistence::Overwrite {
                        E::replace(s, b).await
                    } else {
                        continue; // skip
                    };
                    r.record(key, outcome)?;
                }
            }
            Action::Update {
                entities,
                update_mask,
                action_on_non_existence,
            } => {
                let r = out.update.get_or_insert_with(Default::default);
                let keys: Vec<String> = entities.iter().map(E::key).collect();
                let found = existing::<E>(s, &keys).await?;
                let missing: Vec<String> = keys
                    .iter()
                    .filter(|k| !found.contains(k))
                    .cloned()
                    .collect();
                if action_on_non_existence == OnNonExistence::Fail && !missing.is_empty() {
                    r.errors.push(error_entry(&ApiError::NotFound(format!(
                        "The {} {} were not found.",
                        E::PLURAL,
                        names(&missing)
                    ))));
                    continue;
                }
                for b in entities.iter().filter(|b| found.contains(&E::key(b))) {
                    r.record(E::key(b), E::update(s, b, update_mask.as_deref()).await)?;
                }
            }
            Action::Delete {
                entities,
                action_on_non_existence,
            } => {
                let r = out.delete.get_or_insert_with(Default::default);
                let keys: Vec<String> = entities
                    .iter()
                    .map(|e| match e {
                        KeyOr::Key(k) => k.clone(),
                        KeyOr::Entity(b) => E::key(b),
                    })
                    .collect();
                let found = existing::<E>(s, &keys).await?;
                let missing: Vec<String> = keys
                    .iter()
                    .filter(|k| !found.contains(k))
                    .cloned()
                    .collect();
                if action_on_non_existence == OnNonExistence::Fail && !missing.is_empty() {
                    r.errors.push(error_entry(&ApiError::NotFound(format!(
                        "The {} {} were not found.",
                        E::PLURAL,
                        names(&missing)
                    ))));
                    continue;
                }
                for k in found {
                    let outcome = E::delete(s, &k).await;
                    r.record(k, outcome)?;
                }
            }
        }
    }
    Ok(out)
}

/// Checks an `update_mask` against the fields an entity has.
pub fn check_mask(mask: Option<&[String]>, fields: &[&str]) -> Result<(), ApiError> {
    if let Some(bad) = mask
        .into_iter()
        .flatten()
        .find(|f| !fields.contains(&f.as_str()))
    {
        return Err(ApiError::Unprocessable(format!(
            "update_mask: `{bad}` is not one of {}",
            fields.join(", ")
        )));
    }
    Ok(())
}
