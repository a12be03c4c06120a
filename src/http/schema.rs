//! Request bodies: the JSON-schema rules of upstream Trove (`trove/common/apischema.py`,
//! spec `instances-api.md` §8.1 and §11.1), checked by hand and turned into commands.
//!
//! Messages follow jsonschema's style, prefixed `Validation error: ` with the path
//! written like `instance['volume']['size']`. Rules that need state or the catalog are
//! `decide`'s, not ours.

use aggregates::instance::{
    Access, CreateInstance, DatabaseSpec, DatastoreRequest, InstanceCommand, Nic, VolumeRequest,
};
use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::ApiError;

type Obj = Map<String, Value>;

/// The parsed request body: `None` when the request had no JSON body (no
/// Content-Type: upstream then ignores the body).
pub fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Option<Value>, ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime != "application/json" {
        return Err(ApiError::bad_media_type());
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|_| ApiError::bad_request("Malformed request body"))
}

/// The `instance` object of a POST/PUT/PATCH body.
pub fn instance_object(body: Option<Value>) -> Result<Obj, ApiError> {
    let missing = || ApiError::validation("'instance' is a required property");
    match body {
        Some(Value::Object(mut top)) => match top.remove("instance") {
            Some(Value::Object(o)) => Ok(o),
            Some(other) => Err(ApiError::validation(format!(
                "instance {} is not of type 'object'",
                short(&other)
            ))),
            None => Err(missing()),
        },
        _ => Err(missing()),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

fn err(path: &str, reason: impl AsRef<str>) -> ApiError {
    ApiError::validation(format!("{path} {}", reason.as_ref()))
}

fn type_err(path: &str, v: &Value, ty: &str) -> ApiError {
    err(path, format!("{} is not of type '{ty}'", short(v)))
}

/// Upstream's `non_empty_string` with an alphanumeric (`^.*[0-9a-zA-Z]+.*$`): Python's
/// `$` also matches before one final newline, and `.` does not match newlines.
fn has_alnum_line(s: &str) -> bool {
    let s = s.strip_suffix('\n').unwrap_or(s);
    !s.contains('\n') && s.chars().any(|c| c.is_ascii_alphanumeric())
}

fn name_string(path: &str, v: &Value, max: usize) -> Result<String, ApiError> {
    let s = v.as_str().ok_or_else(|| type_err(path, v, "string"))?;
    let len = s.chars().count();
    if len == 0 {
        return Err(err(path, format!("{} is too short", short(v))));
    }
    if len > max {
        return Err(err(path, format!("{} is too long", short(v))));
    }
    if !has_alnum_line(s) {
        return Err(err(
            path,
            format!("{} does not match '^.*[0-9a-zA-Z]+.*$'", short(v)),
        ));
    }
    Ok(s.to_string())
}

fn uuid_string(path: &str, v: &Value) -> Result<Uuid, ApiError> {
    let s = v.as_str().ok_or_else(|| type_err(path, v, "string"))?;
    // The schema's pattern is the hyphenated form only.
    if s.len() == 36 {
        if let Ok(u) = Uuid::parse_str(s) {
            return Ok(u);
        }
    }
    Err(err(path, format!("{} is not a 'uuid'", short(v))))
}

fn object<'a>(path: &str, v: &'a Value) -> Result<&'a Obj, ApiError> {
    v.as_object().ok_or_else(|| type_err(path, v, "object"))
}

fn array<'a>(path: &str, v: &'a Value) -> Result<&'a Vec<Value>, ApiError> {
    v.as_array().ok_or_else(|| type_err(path, v, "array"))
}

fn present<'a>(o: &'a Obj, key: &str) -> Option<&'a Value> {
    o.get(key)
}

/// The last path segment of a reference (`https://h/v1.0/p/flavors/7?x=1` → `7`).
fn last_segment(s: &str) -> String {
    let s = s.split(['?', '#']).next().unwrap_or(s);
    let s = s.trim_end_matches('/');
    s.rsplit('/').next().unwrap_or(s).to_string()
}

fn flavor_ref(v: &Value) -> Result<String, ApiError> {
    const P: &str = "instance['flavorRef']";
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Value::String(_) => Ok(last_segment(&name_string(P, v, 255)?)),
        _ => Err(err(
            P,
            format!("{} is not valid under any of the given schemas", short(v)),
        )),
    }
}

fn volume_size(v: &Value) -> Result<u64, ApiError> {
    const P: &str = "instance['volume']['size']";
    let invalid = |extra: &str| {
        err(
            P,
            format!(
                "{} is not valid under any of the given schemas; {extra}",
                short(v)
            ),
        )
    };
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) if i >= 1 => Ok(i as u64),
            Some(i) => Err(invalid(&format!("{i} is less than the minimum of 1"))),
            None => match n.as_u64() {
                Some(u) => Ok(u),
                None => Err(invalid(&format!("{n} is not of type 'integer'"))),
            },
        },
        Value::String(s) => {
            let digits_ok = !s.is_empty()
                && s.len() <= 40
                && s.chars().all(|c| c.is_ascii_digit())
                && s.trim_start_matches('0')
                    .chars()
                    .next()
                    .is_some_and(|c| c != '0');
            if !digits_ok {
                return Err(invalid(&format!(
                    "{} does not match '^0*[1-9]+[0-9]*$'",
                    short(v)
                )));
            }
            // Longer than u64: certainly over any maximum; saturate so the size check
            // answers 413 rather than a parse error.
            Ok(s.trim_start_matches('0').parse::<u64>().unwrap_or(u64::MAX))
        }
        _ => Err(invalid(&format!(
            "{} is not of type 'integer', 'string'",
            short(v)
        ))),
    }
}

fn is_ipv4(s: &str) -> bool {
    (7..=15).contains(&s.len())
        && s.split('.').count() == 4
        && s.split('.')
            .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
}

/// The schema's CIDR regex: dotted quad (octets not range-checked), optional /0-/32.
fn is_cidr(s: &str) -> bool {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (s, None),
    };
    let quad = ip.split('.').count() == 4
        && ip
            .split('.')
            .all(|p| (1..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()));
    let prefix_ok = prefix.is_none_or(|p| {
        (1..=2).contains(&p.len())
            && p.chars().all(|c| c.is_ascii_digit())
            && p.parse::<u8>().is_ok_and(|n| n <= 32)
            && !(p.len() == 2 && p.starts_with('0'))
    });
    quad && prefix_ok
}

fn access(path: &str, v: &Value, allow_extra: bool) -> Result<Access, ApiError> {
    let o = object(path, v)?;
    if !allow_extra {
        if let Some(k) = o
            .keys()
            .find(|k| *k != "is_public" && *k != "allowed_cidrs")
        {
            return Err(err(
                path,
                format!("Additional properties are not allowed ('{k}' was unexpected)"),
            ));
        }
    }
    let is_public = match o.get("is_public") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(type_err(&format!("{path}['is_public']"), other, "boolean")),
    };
    let mut cidrs: Vec<String> = Vec::new();
    if let Some(list) = o.get("allowed_cidrs") {
        let p = format!("{path}['allowed_cidrs']");
        for (i, item) in array(&p, list)?.iter().enumerate() {
            let ip = format!("{p}[{i}]");
            let s = item.as_str().ok_or_else(|| type_err(&ip, item, "string"))?;
            if !is_cidr(s) {
                return Err(err(
                    &ip,
                    format!("{} is not a valid IPv4 CIDR", short(item)),
                ));
            }
            if cidrs.iter().any(|c| c == s) {
                return Err(err(&p, format!("{} has non-unique elements", short(list))));
            }
            cidrs.push(s.to_string());
        }
    }
    Ok(Access {
        is_public,
        allowed_cidrs: cidrs,
    })
}

/// A create body (without secrets sealed yet: passwords are returned apart, in the
/// order of `users`, so the caller can seal them with the instance's key).
pub struct CreateRequest {
    pub command: CreateInstance,
    pub passwords: Vec<String>,
}

/// Parses and checks `POST /instances`' `instance` object. Unknown keys are ignored, as
/// upstream's schema allows.
// Long for now: issue #11 point 2 replaces this with typed request structs.
#[allow(clippy::too_many_lines)]
pub fn create_request(o: &Obj, instance_id: Uuid) -> Result<CreateRequest, ApiError> {
    let name = match present(o, "name") {
        Some(v) => name_string("instance['name']", v, 255)?,
        None => return Err(err("instance", "'name' is a required property")),
    };
    let flavor_ref = match (present(o, "flavorRef"), present(o, "flavor")) {
        (Some(v), _) => Some(flavor_ref(v)?),
        // openstacksdk has no `flavorRef`: it sends `flavor: {"id": ...}` (spec
        // clients.md §3). Accepted as an alias so the SDK can create instances.
        (None, Some(Value::Object(f))) => f.get("id").map(flavor_ref).transpose()?,
        (None, _) => None,
    };
    let volume = match present(o, "volume") {
        None => None,
        Some(v) => {
            let vo = object("instance['volume']", v)?;
            let size = vo
                .get("size")
                .ok_or_else(|| err("instance['volume']", "'size' is a required property"))?;
            let volume_type = match vo.get("type") {
                None | Some(Value::Null) => None,
                Some(t) => Some(name_string("instance['volume']['type']", t, 255)?),
            };
            Some(VolumeRequest {
                size: volume_size(size)?,
                volume_type,
            })
        }
    };
    let datastore = match present(o, "datastore") {
        None => None,
        Some(v) => {
            let d = object("instance['datastore']", v)?;
            let field = |k: &str| {
                d.get(k)
                    .map(|x| name_string(&format!("instance['datastore']['{k}']"), x, 255))
                    .transpose()
            };
            Some(DatastoreRequest {
                datastore_type: field("type")?,
                version: field("version")?,
                version_number: field("version_number")?,
            })
        }
    };
    let databases = match present(o, "databases") {
        None => vec![],
        Some(v) => array("instance['databases']", v)?
            .iter()
            .enumerate()
            .map(|(i, d)| database(i, d))
            .collect::<Result<_, _>>()?,
    };
    let mut passwords = Vec::new();
    let mut users = Vec::new();
    if let Some(v) = present(o, "users") {
        for (i, u) in array("instance['users']", v)?.iter().enumerate() {
            let (user, password) = user(i, u)?;
            users.push(user);
            passwords.push(password);
        }
    }
    let restore_backup_id = match present(o, "restorePoint") {
        None => None,
        Some(v) => {
            let r = object("instance['restorePoint']", v)?;
            let b = r.get("backupRef").ok_or_else(|| {
                err(
                    "instance['restorePoint']",
                    "'backupRef' is a required property",
                )
            })?;
            Some(uuid_string("instance['restorePoint']['backupRef']", b)?)
        }
    };
    let availability_zone = present(o, "availability_zone")
        .map(|v| name_string("instance['availability_zone']", v, 255))
        .transpose()?;
    let nics = match present(o, "nics") {
        None => vec![],
        Some(v) => nics(v)?,
    };
    let configuration = match present(o, "configuration") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(last_segment(s)),
        Some(other) => return Err(type_err("instance['configuration']", other, "string")),
    };
    let replica_of = present(o, "replica_of")
        .map(|v| uuid_string("instance['replica_of']", v))
        .transpose()?;
    let replica_count = match present(o, "replica_count") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=3) => Some(n as u32),
            Some(n) if n > 3 => {
                return Err(err(
                    "instance['replica_count']",
                    format!("{n} is greater than the maximum of 3"),
                ))
            }
            _ if v.is_i64() => {
                return Err(err(
                    "instance['replica_count']",
                    format!("{v} is less than the minimum of 1"),
                ))
            }
            _ => return Err(type_err("instance['replica_count']", v, "integer")),
        },
    };
    let locality = match present(o, "locality") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::String(_)) => return Err(err("instance['locality']", "'' is too short")),
        Some(other) => return Err(type_err("instance['locality']", other, "string")),
    };
    let region_name = present(o, "region_name")
        .map(|v| name_string("instance['region_name']", v, 255))
        .transpose()?;
    let modules = match present(o, "modules") {
        None => vec![],
        Some(v) => array("instance['modules']", v)?
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let p = format!("instance['modules'][{i}]");
                let mo = object(&p, m)?;
                let id = mo
                    .get("id")
                    .ok_or_else(|| err(&p, "'id' is a required property"))?;
                uuid_string(&format!("{p}['id']"), id)
            })
            .collect::<Result<_, _>>()?,
    };
    let access = match present(o, "access") {
        None => None,
        Some(v) => {
            access("instance['access']", v, true)?;
            Some(v.clone())
        }
    };
    Ok(CreateRequest {
        command: CreateInstance {
            instance_id,
            name,
            flavor_ref,
            volume,
            datastore,
            databases,
            users,
            nics,
            availability_zone,
            region_name,
            modules,
            restore_backup_id,
            replica_of,
            replica_count,
            locality,
            configuration,
            access,
            root_password: None,
        },
        passwords,
    })
}

fn database(i: usize, d: &Value) -> Result<DatabaseSpec, ApiError> {
    let p = format!("instance['databases'][{i}]");
    let o = object(&p, d)?;
    let name = o
        .get("name")
        .ok_or_else(|| err(&p, "'name' is a required property"))?;
    let opt = |k: &str| {
        o.get(k)
            .map(|v| name_string(&format!("{p}['{k}']"), v, 255))
            .transpose()
    };
    Ok(DatabaseSpec {
        name: name_string(&format!("{p}['name']"), name, 255)?,
        character_set: opt("character_set")?,
        collate: opt("collate")?,
    })
}

/// A user with its password still in plaintext (sealed by the caller).
fn user(i: usize, u: &Value) -> Result<(aggregates::instance::UserRequest, String), ApiError> {
    let p = format!("instance['users'][{i}]");
    let o = object(&p, u)?;
    let name = o
        .get("name")
        .ok_or_else(|| err(&p, "'name' is a required property"))?;
    let password = o
        .get("password")
        .ok_or_else(|| err(&p, "'password' is a required property"))?;
    // Upstream's schema sets no maximum on user names.
    let name = name_string(&format!("{p}['name']"), name, usize::MAX)?;
    let password = name_string(&format!("{p}['password']"), password, 255)?;
    let host = match o.get("host") {
        None | Some(Value::Null) => None,
        Some(h) => {
            let hp = format!("{p}['host']");
            let s = h.as_str().ok_or_else(|| type_err(&hp, h, "string"))?;
            let core = s.strip_prefix('%').unwrap_or(s);
            let core = core.strip_suffix('%').unwrap_or(core);
            let ok = !s.is_empty()
                && core
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '(' | ')' | '.'));
            if !ok {
                return Err(err(
                    &hp,
                    format!("{} does not match '^[%]?[\\w().]*[%]?$'", short(h)),
                ));
            }
            Some(s.to_string())
        }
    };
    let mut databases: Vec<String> = Vec::new();
    if let Some(v) = o.get("databases") {
        let dp = format!("{p}['databases']");
        for (j, d) in array(&dp, v)?.iter().enumerate() {
            let ip = format!("{dp}[{j}]");
            let dob = object(&ip, d)?;
            let n = dob
                .get("name")
                .ok_or_else(|| err(&ip, "'name' is a required property"))?;
            let n = name_string(&format!("{ip}['name']"), n, 255)?;
            if databases.contains(&n) {
                return Err(err(&dp, format!("{} has non-unique elements", short(v))));
            }
            databases.push(n);
        }
    }
    // The placeholder is replaced by the sealed password before the command runs.
    let sealed = aggregates::instance::SealedSecret {
        key_id: String::new(),
        nonce: String::new(),
        ciphertext: String::new(),
    };
    Ok((
        aggregates::instance::UserRequest {
            name,
            host,
            password: sealed,
            databases,
        },
        password,
    ))
}

fn nics(v: &Value) -> Result<Vec<Nic>, ApiError> {
    const P: &str = "instance['nics']";
    let list = array(P, v)?;
    if list.len() > 1 {
        return Err(err(P, format!("{} is too long", short(v))));
    }
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let p = format!("{P}[{i}]");
        let o = object(&p, item)?;
        let mut nic = Nic::default();
        for (k, val) in o {
            let kp = format!("{p}['{k}']");
            match k.as_str() {
                "network_id" | "net-id" => {
                    nic.network_id = Some(uuid_string(&kp, val)?.to_string())
                }
                "subnet_id" => nic.subnet_id = Some(uuid_string(&kp, val)?.to_string()),
                "ip_address" => {
                    let s = val.as_str().ok_or_else(|| type_err(&kp, val, "string"))?;
                    if !is_ipv4(s) {
                        return Err(err(&kp, format!("{} is not a 'ipv4'", short(val))));
                    }
                    nic.ip_address = Some(s.to_string());
                }
                other => {
                    return Err(err(
                        &p,
                        format!("Additional properties are not allowed ('{other}' was unexpected)"),
                    ))
                }
            }
        }
        out.push(nic);
    }
    Ok(out)
}

/// Which HTTP method an update came with: the accepted keys differ (spec §11.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateMethod {
    Put,
    Patch,
}

/// Parses a PUT/PATCH `instance` object into the commands to decide, in order
/// (rename first), per spec §11.2.
pub fn update_commands(o: &Obj, method: UpdateMethod) -> Result<Vec<InstanceCommand>, ApiError> {
    for k in o.keys() {
        let allowed = match k.as_str() {
            "name" | "configuration" | "replica_of" | "datastore_version" => true,
            "slave_of" => method == UpdateMethod::Patch,
            "access" => method == UpdateMethod::Put,
            _ => false,
        };
        if !allowed {
            return Err(err(
                "instance",
                format!("Additional properties are not allowed ('{k}' was unexpected)"),
            ));
        }
    }
    let mut cmds = Vec::new();
    if let Some(v) = o.get("name") {
        cmds.push(InstanceCommand::RenameInstance {
            name: name_string("instance['name']", v, 255)?,
        });
    }
    let others = o.len() - usize::from(o.contains_key("name"));
    if others > 1 {
        return Err(ApiError::bad_request(
            "Only one attribute (except 'name') is allowed to update.",
        ));
    }
    let second = if o.contains_key("replica_of") || o.contains_key("slave_of") {
        Some(InstanceCommand::DetachReplica)
    } else if let Some(v) = o.get("configuration") {
        match v {
            Value::Null => Some(InstanceCommand::DetachConfiguration),
            Value::String(_) => Some(InstanceCommand::AttachConfiguration {
                configuration_id: uuid_string("instance['configuration']", v)?.to_string(),
            }),
            other => return Err(type_err("instance['configuration']", other, "string")),
        }
    } else if let Some(v) = o.get("datastore_version") {
        Some(InstanceCommand::UpgradeDatastoreVersion {
            version: name_string("instance['datastore_version']", v, 255)?,
        })
    } else if let Some(v) = o.get("access") {
        Some(InstanceCommand::UpdateAccess {
            access: access("instance['access']", v, false)?,
        })
    } else if o.is_empty() {
        // `{"instance": {}}` means "detach the configuration group" upstream.
        Some(InstanceCommand::DetachConfiguration)
    } else {
        None
    };
    cmds.extend(second);
    Ok(cmds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn flavor_ref_takes_the_last_path_segment() {
        assert_eq!(flavor_ref(&json!(7)).unwrap(), "7");
        assert_eq!(
            flavor_ref(&json!("https://h/v1.0/p/flavors/7?x=1")).unwrap(),
            "7"
        );
        assert!(flavor_ref(&json!(1.5)).is_err());
    }

    #[test]
    fn sdk_flavor_object_stands_in_for_flavor_ref() {
        let o = obj(json!({"name": "db", "flavor": {"id": "6"}, "volume": {"size": 1}}));
        assert_eq!(
            create_request(&o, Uuid::new_v4())
                .unwrap()
                .command
                .flavor_ref
                .as_deref(),
            Some("6")
        );
        let o = obj(json!({"name": "db", "flavorRef": 2, "flavor": {"id": "6"}}));
        assert_eq!(
            create_request(&o, Uuid::new_v4())
                .unwrap()
                .command
                .flavor_ref
                .as_deref(),
            Some("2")
        );
    }

    #[test]
    fn volume_size_accepts_integers_and_digit_strings_only() {
        assert_eq!(volume_size(&json!(2)).unwrap(), 2);
        assert_eq!(volume_size(&json!("007")).unwrap(), 7);
        assert_eq!(volume_size(&json!("10")).unwrap(), 10);
        for bad in [
            json!(0),
            json!(-1),
            json!(1.0),
            json!("0"),
            json!("1a"),
            json!(true),
        ] {
            assert!(volume_size(&bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn cidrs_follow_the_schema_regex() {
        for ok in ["10.0.0.0/8", "202.78.240.0/24", "1.2.3.4", "0.0.0.0/0"] {
            assert!(is_cidr(ok), "{ok}");
        }
        for bad in ["10.0.0.0/33", "::1/128", "10.0.0/8", "a.b.c.d"] {
            assert!(!is_cidr(bad), "{bad}");
        }
    }

    #[test]
    fn name_needs_an_alphanumeric_on_one_line() {
        assert!(has_alnum_line("db-1"));
        assert!(has_alnum_line("db\n"));
        assert!(!has_alnum_line("a\nb"));
        assert!(!has_alnum_line("---"));
    }

    #[test]
    fn update_with_two_non_name_keys_is_refused() {
        let o = obj(json!({"configuration": null, "datastore_version": "8.0"}));
        let e = update_commands(&o, UpdateMethod::Put).unwrap_err();
        assert_eq!(
            e.message,
            "Only one attribute (except 'name') is allowed to update."
        );
    }

    #[test]
    fn empty_update_detaches_configuration() {
        let cmds = update_commands(&Obj::new(), UpdateMethod::Put).unwrap();
        assert_eq!(cmds, vec![InstanceCommand::DetachConfiguration]);
    }

    #[test]
    fn access_only_on_put_and_slave_of_only_on_patch() {
        let a = obj(json!({"access": {"is_public": true}}));
        assert!(update_commands(&a, UpdateMethod::Patch).is_err());
        assert!(update_commands(&a, UpdateMethod::Put).is_ok());
        let s = obj(json!({"slave_of": null}));
        assert!(update_commands(&s, UpdateMethod::Put).is_err());
        assert_eq!(
            update_commands(&s, UpdateMethod::Patch).unwrap(),
            vec![InstanceCommand::DetachReplica]
        );
    }

    #[test]
    fn create_collects_passwords_apart_from_the_command() {
        let o = obj(json!({
            "name": "db", "flavorRef": 1, "volume": {"size": 1},
            "databases": [{"name": "a"}],
            "users": [{"name": "u", "password": "s3cret", "databases": [{"name": "a"}]}],
            "nics": [{"net-id": "a5330d7d-0e8c-48b4-9f6c-0f2c4ab1b854"}]
        }));
        let r = create_request(&o, Uuid::new_v4()).unwrap();
        assert_eq!(r.passwords, vec!["s3cret".to_string()]);
        assert_eq!(
            r.command.nics[0].network_id.as_deref(),
            Some("a5330d7d-0e8c-48b4-9f6c-0f2c4ab1b854")
        );
        assert!(!format!("{:?}", r.command).contains("s3cret"));
    }
}
