//! Databases, users and root of an instance (ADR 0010): the commands' rules and the
//! queue of changes the guest has still to apply.
//!
//! The instance's stream records every change (`DatabasesCreated`, `UsersCreated`, ...),
//! so the lists are a read model and the history says who changed what. Each change is
//! queued on the folded state ([`PendingGuestChange`]) until the saga reports it applied
//! (`GuestChangeApplied`) or refused by the guest (`GuestChangeFailed`, which takes the
//! change back out of the lists). Pure: no I/O, no clock.

use uuid::Uuid;

use super::command::{GuestUserRequest, InstanceCommand, UserAttributes};
use super::error::DomainError;
use super::event::{DatabaseSpec, FaultInfo, InstanceEvent, UserPassword, UserSpec};
use super::state::{Fault, GuestLists, GuestUser, Instance, PendingGuestChange};

/// Datastore families with databases and users (upstream's `load_and_verify`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// MySQL and MariaDB: users are `name@host`.
    Mysql,
    /// PostgreSQL: no hosts.
    Postgresql,
}

impl Family {
    /// The family of a datastore manager, if it has databases and users.
    pub fn of(manager: &str) -> Option<Family> {
        match manager {
            "mysql" | "mariadb" => Some(Family::Mysql),
            "postgresql" => Some(Family::Postgresql),
            _ => None,
        }
    }

    /// Upstream's `ignore_dbs`.
    pub fn reserved_databases(self) -> &'static [&'static str] {
        match self {
            Family::Mysql => &["mysql", "information_schema", "performance_schema", "sys"],
            Family::Postgresql => &["os_admin", "postgres"],
        }
    }

    /// Upstream's `ignore_users`, then the accounts of the server itself and of troved
    /// (the local provider's administration account `troved-db`, MariaDB's
    /// `mariadb.sys` and `PUBLIC`): a user create must not take one of them over.
    pub fn reserved_users(self) -> &'static [&'static str] {
        match self {
            Family::Mysql => &["os_admin", "root", "troved-db", "mariadb.sys", "PUBLIC"],
            Family::Postgresql => &["os_admin", "postgres", "troved-db"],
        }
    }

    /// Reserved name prefixes: the server's own (`mysql.session`, PostgreSQL's `pg_*`
    /// roles) and troved's replication accounts (`troved_repl_<port>`).
    pub fn reserved_user_prefixes(self) -> &'static [&'static str] {
        match self {
            Family::Mysql => &["mysql.", "troved_repl_"],
            Family::Postgresql => &["pg_"],
        }
    }

    /// Whether `name` is reserved: listed, or starting with a reserved prefix.
    pub fn is_reserved_user(self, name: &str) -> bool {
        self.reserved_users().contains(&name)
            || self
                .reserved_user_prefixes()
                .iter()
                .any(|p| name.starts_with(p))
    }

    /// The reserved names as a message shows them (prefixes as `mysql.*`).
    fn reserved_users_shown(self) -> String {
        let prefixes: Vec<String> = self
            .reserved_user_prefixes()
            .iter()
            .map(|p| format!("{p}*"))
            .collect();
        let mut all: Vec<&str> = self.reserved_users().to_vec();
        all.extend(prefixes.iter().map(String::as_str));
        py_list(&all)
    }

    fn max_database_name(self) -> usize {
        match self {
            Family::Mysql => 64,
            Family::Postgresql => 63,
        }
    }

    fn max_user_name(self) -> usize {
        match self {
            Family::Mysql => 16,
            Family::Postgresql => 63,
        }
    }
}

/// Python's rendering of a list of strings, as upstream's messages show it.
fn py_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Upstream's MySQL schema name rule: `^[A-Za-z0-9_-]+[\s?#@]*[A-Za-z0-9_-]+$`.
fn mysql_database_name_ok(name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let chars: Vec<char> = name.chars().collect();
    let Some(first_other) = chars.iter().position(|c| !word(*c)) else {
        return chars.len() >= 2;
    };
    let last_other = chars.iter().rposition(|c| !word(*c)).unwrap_or(first_other);
    first_other > 0
        && last_other + 1 < chars.len()
        && chars[first_other..=last_other]
            .iter()
            .all(|c| c.is_whitespace() || matches!(c, '?' | '#' | '@'))
}

/// Upstream's MySQL user/password rule: no leading or trailing space, no quotes, `;`,
/// backquote, `,`, `/` or backslash, nothing Python would escape.
fn mysql_string_ok(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace)
        && !s
            .chars()
            .any(|c| matches!(c, '\'' | '"' | ';' | '`' | ',' | '/' | '\\') || c.is_control())
}

/// Checks a database name for `family` (reserved names, length, characters).
pub fn check_database_name(family: Family, name: &str) -> Result<(), DomainError> {
    let bad = |m: String| Err(DomainError::InvalidGuestInput(m));
    let reserved = family.reserved_databases();
    if reserved.contains(&name) {
        return bad(format!(
            "Database name \"{name}\" is on the reserved list: {}.",
            py_list(reserved)
        ));
    }
    let max = family.max_database_name();
    if name.chars().count() > max {
        return bad(format!(
            "Schema name '{name}' is too long. Max length = {max}."
        ));
    }
    let ok = match family {
        Family::Mysql => mysql_database_name_ok(name),
        // `^[\x01-\uFFFF]+[^\s]$`: at least two characters, the last not a space.
        Family::Postgresql => {
            name.chars().count() >= 2
                && !name.contains('\0')
                && !name.ends_with(char::is_whitespace)
        }
    };
    if !ok {
        return bad(format!("'{name}' is not a valid schema name."));
    }
    Ok(())
}

/// Checks a user's name and host for `family` (reserved names last, as upstream).
pub fn check_user(family: Family, name: &str, host: &str) -> Result<(), DomainError> {
    let bad = |m: String| Err(DomainError::InvalidGuestInput(m));
    let max = family.max_user_name();
    if name.chars().count() > max {
        return bad(format!(
            "User name '{name}' is too long. Max length = {max}."
        ));
    }
    let name_ok = match family {
        Family::Mysql => mysql_string_ok(name),
        Family::Postgresql => !name.is_empty() && !name.contains('\0'),
    };
    if !name_ok {
        return bad(format!("'{name}' is not a valid user name."));
    }
    let host_ok = match family {
        Family::Mysql => mysql_string_ok(host),
        Family::Postgresql => host == "%",
    };
    if !host_ok {
        return bad(format!("'{host}' is not a valid hostname."));
    }
    match reserved_user(family, name) {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

/// The refusal of a reserved user name for `family`, if `name` is one.
pub fn reserved_user(family: Family, name: &str) -> Option<DomainError> {
    family.is_reserved_user(name).then(|| {
        DomainError::InvalidGuestInput(format!(
            "User name \"{name}\" is on the reserved list: {}.",
            family.reserved_users_shown()
        ))
    })
}

/// Checks a plaintext password for `family` (the shell, before it seals it). The
/// message never echoes the password.
pub fn check_password(family: Family, password: &str) -> Result<(), DomainError> {
    let ok = match family {
        Family::Mysql => mysql_string_ok(password),
        Family::Postgresql => !password.is_empty() && !password.contains('\0'),
    };
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidGuestInput(
            "The password is not a valid password.".into(),
        ))
    }
}

/// What a databases/users/root decision needs besides the state (filled by `decide`
/// from its context, so this module does not depend on it).
pub struct GuestCtx {
    pub now: chrono::DateTime<chrono::Utc>,
    /// The instance the command addresses (for messages).
    pub instance_id: Uuid,
    /// Whether the caller may see the instance (its project's, or an admin).
    pub sees_instance: bool,
    /// Who asks (recorded as `root_enabled_by`).
    pub user_id: String,
}

/// Upstream's `load_and_verify`: the instance is visible, of a datastore with
/// databases and users, and running. Returns its id and family.
pub fn guest_admin_gate(
    state: &Instance,
    sees_instance: bool,
    instance_id: Uuid,
) -> Result<(Uuid, Family), DomainError> {
    let id = match state.id {
        Some(id) if !state.deleted && sees_instance => id,
        _ => return Err(DomainError::ResourceNotFound(instance_id.to_string())),
    };
    let manager = state
        .datastore
        .as_ref()
        .map(|d| d.manager.as_str())
        .unwrap_or("");
    let family = Family::of(manager)
        .ok_or_else(|| DomainError::GuestOperationNotSupported(manager.into()))?;
    let status = state.command_status();
    if state.server_id.is_none() || !matches!(status, "ACTIVE" | "HEALTHY" | "RESTART_REQUIRED") {
        return Err(DomainError::GuestNotRunning {
            id,
            status: status.to_string(),
        });
    }
    Ok((id, family))
}

/// The user `name@host`, if the lists hold it.
pub fn find_user<'a>(state: &'a Instance, name: &str, host: &str) -> Option<&'a GuestUser> {
    state
        .users
        .iter()
        .find(|u| u.name == name && u.host == host)
}

/// How a user is named in a not-found message: as the request named it.
fn user_not_found(name: &str, host: &str) -> DomainError {
    DomainError::UserNotFound(if host == "%" {
        name.to_string()
    } else {
        format!("{name}@{host}")
    })
}

fn existing_user<'a>(
    state: &'a Instance,
    name: &str,
    host: &str,
) -> Result<&'a GuestUser, DomainError> {
    find_user(state, name, host).ok_or_else(|| user_not_found(name, host))
}

/// Decides a databases/users/root command (see [`InstanceCommand::is_guest_admin`]).
pub fn decide_guest_admin(
    state: &Instance,
    cmd: &InstanceCommand,
    ctx: &GuestCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand::*;
    let at = ctx.now;
    if let RecordGuestChangeApplied { seq } | RecordGuestChangeFailed { seq, .. } = cmd {
        return report(state, cmd, *seq, ctx);
    }
    let (id, family) = guest_admin_gate(state, ctx.sees_instance, ctx.instance_id)?;
    // Listing stays allowed (the handlers read the lists without deciding).
    if state.replica_of.is_some() {
        return Err(DomainError::GuestChangeOnReplica(id));
    }
    let event = match cmd {
        CreateDatabases { databases } => create_databases(state, family, databases, ctx)?,
        DeleteDatabase { name } => delete_database(state, family, name, ctx)?,
        CreateUsers { users } => create_users(state, family, users, ctx)?,
        DeleteUser { name, host } => {
            if family.is_reserved_user(name) {
                check_user(family, name, host)?;
            }
            existing_user(state, name, host)?;
            InstanceEvent::UserDeleted {
                name: name.clone(),
                host: host.clone(),
                at,
            }
        }
        UpdateUserAttributes { name, host, update } => {
            update_user(state, family, name, host, update, ctx)?
        }
        ChangeUserPasswords { users } => change_passwords(state, family, users, ctx)?,
        GrantUserAccess { .. } | RevokeUserAccess { .. } => access(state, cmd, ctx)?,
        EnableRoot { password } => InstanceEvent::RootEnabled {
            password: password.clone(),
            user_id: ctx.user_id.clone(),
            at,
        },
        DisableRoot => {
            if !state.root_enabled {
                return Err(DomainError::RootNeverEnabled);
            }
            InstanceEvent::RootDisabled { at }
        }
        _ => return Err(DomainError::InvalidReport(cmd.name().into())),
    };
    Ok(vec![event])
}

fn delete_database(
    state: &Instance,
    family: Family,
    name: &str,
    ctx: &GuestCtx,
) -> Result<InstanceEvent, DomainError> {
    if family.reserved_databases().contains(&name) {
        check_database_name(family, name)?;
    }
    if !state.databases.iter().any(|d| d.name == name) {
        return Err(DomainError::DatabaseNotFound(name.to_string()));
    }
    Ok(InstanceEvent::DatabaseDeleted {
        name: name.to_string(),
        at: ctx.now,
    })
}

/// Grant (databases the instance has) and revoke (a database the user has).
fn access(
    state: &Instance,
    cmd: &InstanceCommand,
    ctx: &GuestCtx,
) -> Result<InstanceEvent, DomainError> {
    let at = ctx.now;
    match cmd {
        InstanceCommand::GrantUserAccess {
            name,
            host,
            databases,
        } => {
            existing_user(state, name, host)?;
            if let Some(d) = databases
                .iter()
                .find(|d| !state.databases.iter().any(|x| &x.name == *d))
            {
                return Err(DomainError::DatabaseNotFound(d.clone()));
            }
            Ok(InstanceEvent::UserAccessGranted {
                name: name.clone(),
                host: host.clone(),
                databases: databases.clone(),
                at,
            })
        }
        InstanceCommand::RevokeUserAccess {
            name,
            host,
            database,
        } => {
            let user = existing_user(state, name, host)?;
            if !user.databases.contains(database) {
                return Err(DomainError::DatabaseNotFound(database.clone()));
            }
            Ok(InstanceEvent::UserAccessRevoked {
                name: name.clone(),
                host: host.clone(),
                database: database.clone(),
                at,
            })
        }
        _ => Err(DomainError::InvalidReport(cmd.name().into())),
    }
}

/// A character set and collation are names of letters, digits and `_` (upstream checks
/// them against MySQL's lists; the server refuses an unknown one, and the guest's
/// refusal is answered). PostgreSQL ignores both, as upstream's guest does.
fn check_charset(family: Family, db: &DatabaseSpec) -> Result<(), DomainError> {
    if family != Family::Mysql {
        return Ok(());
    }
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if let Some(cs) = db.character_set.as_deref().filter(|c| !ok(c)) {
        return Err(DomainError::InvalidGuestInput(format!(
            "'{cs}' not a valid character set."
        )));
    }
    if let Some(co) = db.collate.as_deref().filter(|c| !ok(c)) {
        return Err(DomainError::InvalidGuestInput(format!(
            "'{co}' not a valid collation."
        )));
    }
    Ok(())
}

fn create_databases(
    state: &Instance,
    family: Family,
    databases: &[DatabaseSpec],
    ctx: &GuestCtx,
) -> Result<InstanceEvent, DomainError> {
    let mut seen: Vec<&str> = Vec::new();
    for db in databases {
        check_database_name(family, &db.name)?;
        check_charset(family, db)?;
        if seen.contains(&db.name.as_str()) {
            return Err(DomainError::DuplicateDatabases);
        }
        seen.push(&db.name);
        if state.databases.iter().any(|d| d.name == db.name) {
            return Err(DomainError::DatabaseAlreadyExists(db.name.clone()));
        }
    }
    Ok(InstanceEvent::DatabasesCreated {
        databases: databases.to_vec(),
        at: ctx.now,
    })
}

fn create_users(
    state: &Instance,
    family: Family,
    users: &[GuestUserRequest],
    ctx: &GuestCtx,
) -> Result<InstanceEvent, DomainError> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut specs = Vec::with_capacity(users.len());
    for u in users {
        check_user(family, &u.name, &u.host)?;
        if seen.contains(&(u.name.as_str(), u.host.as_str())) {
            return Err(DomainError::DuplicateUsers);
        }
        seen.push((&u.name, &u.host));
        if find_user(state, &u.name, &u.host).is_some() {
            return Err(DomainError::UserAlreadyExists(u.name.clone()));
        }
        if let Some(d) = u
            .databases
            .iter()
            .find(|d| !state.databases.iter().any(|x| &x.name == *d))
        {
            return Err(DomainError::DatabaseNotFound(d.clone()));
        }
        specs.push(UserSpec {
            name: u.name.clone(),
            host: u.host.clone(),
            password: u.password.clone(),
            databases: u.databases.clone(),
        });
    }
    Ok(InstanceEvent::UsersCreated {
        users: specs,
        at: ctx.now,
    })
}

fn update_user(
    state: &Instance,
    family: Family,
    name: &str,
    host: &str,
    update: &UserAttributes,
    ctx: &GuestCtx,
) -> Result<InstanceEvent, DomainError> {
    existing_user(state, name, host)?;
    let new_name = update.name.clone().filter(|n| n != name);
    let new_host = update.host.clone().filter(|h| h != host);
    let (to_name, to_host) = (
        new_name.as_deref().unwrap_or(name),
        new_host.as_deref().unwrap_or(host),
    );
    check_user(family, to_name, to_host)?;
    if (new_name.is_some() || new_host.is_some()) && find_user(state, to_name, to_host).is_some() {
        return Err(DomainError::UserAlreadyExists(to_name.to_string()));
    }
    Ok(InstanceEvent::UserAttributesUpdated {
        name: name.to_string(),
        host: host.to_string(),
        new_name,
        new_host,
        password: update.password.clone(),
        at: ctx.now,
    })
}

fn change_passwords(
    state: &Instance,
    family: Family,
    users: &[UserPassword],
    ctx: &GuestCtx,
) -> Result<InstanceEvent, DomainError> {
    for u in users {
        check_user(family, &u.name, &u.host)?;
        existing_user(state, &u.name, &u.host)?;
    }
    Ok(InstanceEvent::UserPasswordsChanged {
        users: users.to_vec(),
        at: ctx.now,
    })
}

/// The saga's report on change `seq`: idempotent (a change no longer pending decides
/// nothing).
fn report(
    state: &Instance,
    cmd: &InstanceCommand,
    seq: u64,
    ctx: &GuestCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    if !state.exists() {
        return Err(DomainError::ResourceNotFound(ctx.instance_id.to_string()));
    }
    if state.deleted || !state.guest_changes.iter().any(|p| p.seq == seq) {
        // Already reported (a retried step), or dropped with a deletion.
        return Ok(vec![]);
    }
    let at = ctx.now;
    Ok(vec![match cmd {
        InstanceCommand::RecordGuestChangeFailed { fault, .. } => {
            InstanceEvent::GuestChangeFailed {
                seq,
                fault: fault.clone(),
                at,
            }
        }
        _ => InstanceEvent::GuestChangeApplied { seq, at },
    }])
}

/// Whether a queued change still fits the lists it was decided on: after an earlier
/// change was refused and taken back (`GuestChangeFailed`), a later one may depend on
/// it (a grant, a new password or a rename of a user whose create the guest refused; a
/// user created with access to a database whose create was refused). The saga refuses
/// such a change instead of applying it (a grant would create the account). The reason
/// is the fault's message.
pub fn still_applies(p: &PendingGuestChange) -> Result<(), String> {
    use InstanceEvent::*;
    let l = &p.before;
    let user = |name: &str, host: &str| l.users.iter().any(|u| u.name == name && u.host == host);
    let db = |name: &str| l.databases.iter().any(|d| d.name == name);
    let missing_user = |name: &str, host: &str| {
        Err(format!(
            "User {name}@{host} is not on the instance (an earlier change was refused)."
        ))
    };
    let missing_db = |name: &str| {
        Err(format!(
            "Database {name} is not on the instance (an earlier change was refused)."
        ))
    };
    match &p.event {
        UsersCreated { users, .. } => {
            for u in users {
                if let Some(d) = u.databases.iter().find(|d| !db(d)) {
                    return missing_db(d);
                }
            }
            Ok(())
        }
        UserDeleted { name, host, .. }
        | UserAttributesUpdated { name, host, .. }
        | UserAccessRevoked { name, host, .. }
            if !user(name, host) =>
        {
            missing_user(name, host)
        }
        UserPasswordsChanged { users, .. } => {
            match users.iter().find(|u| !user(&u.name, &u.host)) {
                Some(u) => missing_user(&u.name, &u.host),
                None => Ok(()),
            }
        }
        UserAccessGranted {
            name,
            host,
            databases,
            ..
        } => {
            if !user(name, host) {
                return missing_user(name, host);
            }
            match databases.iter().find(|d| !db(d)) {
                Some(d) => missing_db(d),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Whether `event` changes the databases, users or root of the guest.
pub fn is_guest_change(event: &InstanceEvent) -> bool {
    use InstanceEvent::*;
    matches!(
        event,
        DatabasesCreated { .. }
            | DatabaseDeleted { .. }
            | UsersCreated { .. }
            | UserDeleted { .. }
            | UserAttributesUpdated { .. }
            | UserPasswordsChanged { .. }
            | UserAccessGranted { .. }
            | UserAccessRevoked { .. }
            | RootEnabled { .. }
            | RootDisabled { .. }
    )
}

/// Applies a change's effect on the lists.
pub fn apply_to_lists(l: &mut GuestLists, event: &InstanceEvent) {
    use InstanceEvent::*;
    let user = |l: &mut GuestLists, name: &str, host: &str| {
        l.users
            .iter()
            .position(|u| u.name == name && u.host == host)
    };
    match event {
        DatabasesCreated { databases, .. } => l.databases.extend(databases.iter().cloned()),
        DatabaseDeleted { name, .. } => {
            l.databases.retain(|d| &d.name != name);
            for u in &mut l.users {
                u.databases.retain(|d| d != name);
            }
        }
        UsersCreated { users, .. } => l.users.extend(users.iter().map(|u| GuestUser {
            name: u.name.clone(),
            host: u.host.clone(),
            databases: u.databases.clone(),
        })),
        UserDeleted { name, host, .. } => l.users.retain(|u| !(&u.name == name && &u.host == host)),
        UserAttributesUpdated {
            name,
            host,
            new_name,
            new_host,
            ..
        } => {
            if let Some(i) = user(l, name, host) {
                if let Some(n) = new_name {
                    l.users[i].name = n.clone();
                }
                if let Some(h) = new_host {
                    l.users[i].host = h.clone();
                }
            }
        }
        UserAccessGranted {
            name,
            host,
            databases,
            ..
        } => {
            if let Some(i) = user(l, name, host) {
                for d in databases {
                    if !l.users[i].databases.contains(d) {
                        l.users[i].databases.push(d.clone());
                    }
                }
            }
        }
        UserAccessRevoked {
            name,
            host,
            database,
            ..
        } => {
            if let Some(i) = user(l, name, host) {
                l.users[i].databases.retain(|d| d != database);
            }
        }
        RootEnabled { user_id, at, .. } => {
            // Upstream's RootHistory: a new entry unless root is enabled already.
            if !l.root_enabled || l.root_enabled_history.is_none() {
                l.root_enabled_history = Some(Box::new((*at, user_id.clone())));
            }
            l.root_enabled = true;
        }
        RootDisabled { .. } => l.root_enabled = false,
        _ => {}
    }
}

/// The lists of a state.
fn lists_of(s: &Instance) -> GuestLists {
    GuestLists {
        databases: s.databases.clone(),
        users: s.users.clone(),
        root_enabled: s.root_enabled,
        root_enabled_history: s.root_enabled_history.clone(),
    }
}

fn set_lists(s: &mut Instance, l: GuestLists) {
    s.databases = l.databases;
    s.users = l.users;
    s.root_enabled = l.root_enabled;
    s.root_enabled_history = l.root_enabled_history;
}

/// Folds a change: its effect on the lists, queued for the guest.
pub fn record_change(s: &mut Instance, event: &InstanceEvent) {
    let before = lists_of(s);
    let mut after = before.clone();
    apply_to_lists(&mut after, event);
    set_lists(s, after);
    s.guest_changes_made += 1;
    s.guest_changes.push(PendingGuestChange {
        seq: s.guest_changes_made,
        event: event.clone(),
        before,
    });
    if matches!(
        event,
        InstanceEvent::UsersCreated { .. }
            | InstanceEvent::UserAttributesUpdated {
                password: Some(_),
                ..
            }
            | InstanceEvent::UserPasswordsChanged { .. }
            | InstanceEvent::RootEnabled { .. }
    ) {
        s.has_sealed_secrets = true;
    }
    s.updated = event.at();
}

/// Folds the guest's report on change `seq`: applied leaves the lists as they are; failed
/// takes the change out of them (the later pending changes stay in effect) and records
/// the fault.
pub fn record_outcome(
    s: &mut Instance,
    seq: u64,
    fault: Option<&FaultInfo>,
    event: &InstanceEvent,
) {
    let Some(i) = s.guest_changes.iter().position(|p| p.seq == seq) else {
        return;
    };
    let removed = s.guest_changes.remove(i);
    if let Some(f) = fault {
        let mut lists = removed.before;
        for p in &mut s.guest_changes[i..] {
            p.before = lists.clone();
            apply_to_lists(&mut lists, &p.event);
        }
        set_lists(s, lists);
        s.fault = Some(Fault::from_info(f, event.at()));
        s.failed_guest_change = std::num::NonZeroU64::new(seq);
    }
    s.updated = event.at();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_database_names_follow_upstreams_pattern() {
        for ok in ["ab", "db_1", "a-b", "a b", "a@#b"] {
            assert!(mysql_database_name_ok(ok), "{ok}");
        }
        for bad in ["a", "", " ab", "ab ", "a;b", "a.b", "a\\b", "@ab"] {
            assert!(!mysql_database_name_ok(bad), "{bad}");
        }
    }

    #[test]
    fn reserved_and_long_names_are_refused_per_family() {
        assert!(check_database_name(Family::Mysql, "mysql").is_err());
        assert!(check_database_name(Family::Postgresql, "mysql").is_ok());
        assert!(check_database_name(Family::Postgresql, "postgres").is_err());
        assert!(check_user(Family::Mysql, "root", "%").is_err());
        assert!(check_user(Family::Postgresql, "root", "%").is_ok());
        assert!(check_user(Family::Mysql, &"u".repeat(17), "%").is_err());
        assert!(check_user(Family::Postgresql, &"u".repeat(63), "%").is_ok());
        assert!(check_user(Family::Postgresql, "u", "10.0.0.1").is_err());
        assert!(check_user(Family::Mysql, "u'x", "%").is_err());
        assert!(check_password(Family::Mysql, "a;b").is_err());
    }
}
