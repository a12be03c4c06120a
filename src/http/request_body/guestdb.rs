//! Bodies of the databases, users and root endpoints (upstream's `apischema.dbschema`
//! and `apischema.user`): `POST /databases`, `POST /users`, `PUT /users`,
//! `PUT /users/{user}`, `PUT /users/{user}/databases`, `POST /root`. Names, hosts and
//! passwords are checked as at create (the same rule types); the datastore's own rules
//! (reserved names, lengths, characters) are the aggregate's.

use serde::{de, Deserialize, Deserializer};
use utoipa::ToSchema;

use super::instance::{
    DatabaseRequest, Host, Password, UserDatabaseRequest, UserName, UserRequest,
};
use super::{objects_only, present, RequestBody};

objects_only!(
    DatabasesBody,
    UsersBody,
    UserPutBody,
    UserAttributesRequest,
    PasswordsBody,
    PasswordChange,
    AccessBody,
    RootEnableBody,
);

/// `POST /instances/{id}/databases`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"databases": [{"name": "shop", "character_set": "utf8mb4"}]}))]
#[serde(remote = "Self")]
pub struct DatabasesBody {
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "at_least_one")]
    pub databases: Vec<DatabaseRequest>,
}

impl RequestBody for DatabasesBody {
    const ROOT: &'static str = "databases";
}

/// `POST /instances/{id}/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"users": [{"name": "app", "password": "secret", "databases": [{"name": "shop"}]}]}))]
#[serde(remote = "Self")]
pub struct UsersBody {
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "at_least_one")]
    pub users: Vec<UserRequest>,
}

impl RequestBody for UsersBody {
    const ROOT: &'static str = "users";
}

/// `PUT /instances/{id}/users/{user}`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"user": {"name": "new_name", "password": "new_password", "host": "%"}}))]
#[serde(remote = "Self")]
pub struct UserPutBody {
    pub user: UserAttributesRequest,
}

impl RequestBody for UserPutBody {
    const ROOT: &'static str = "user";
}

/// New attributes of a user; at least one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct UserAttributesRequest {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub name: Option<UserName>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub password: Option<Password>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub host: Option<Host>,
}

/// `PUT /instances/{id}/users`: new passwords.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"users": [{"name": "app", "password": "another_password"}]}))]
#[serde(remote = "Self")]
pub struct PasswordsBody {
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "at_least_one")]
    pub users: Vec<PasswordChange>,
}

impl RequestBody for PasswordsBody {
    const ROOT: &'static str = "users";
}

/// A user's new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct PasswordChange {
    pub name: UserName,
    pub password: Password,
    #[serde(default)]
    pub host: Option<Host>,
}

/// `PUT /instances/{id}/users/{user}/databases`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"databases": [{"name": "shop"}]}))]
#[serde(remote = "Self")]
pub struct AccessBody {
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "at_least_one")]
    pub databases: Vec<UserDatabaseRequest>,
}

impl RequestBody for AccessBody {
    const ROOT: &'static str = "databases";
}

/// `POST /instances/{id}/root` with a body: the password to set; without one (no body,
/// `null`, `{}`), a password is generated (upstream's `_get_password_from_body`).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"password": "q5BXXMUMbc8XBf5kkVToKZW4Kx3Egv5VjY0P"}))]
#[serde(remote = "Self")]
pub struct RootEnableBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable = false)]
    pub password: Option<Password>,
}

impl RequestBody for RootEnableBody {
    const ROOT: &'static str = "password";
}

/// Upstream's `minItems: 1` (jsonschema's `databases [] is too short`): an empty batch
/// would record an event that changes nothing.
fn at_least_one<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<T>::deserialize(d)?;
    if items.is_empty() {
        return Err(de::Error::custom("is too short"));
    }
    Ok(items)
}
