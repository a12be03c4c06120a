//! MariaDB's side of `allowed_cidrs` (rules in `crate::local::access`): per user, the
//! account at its own host is locked or opened, and accounts at `network/netmask` hosts
//! are created (a copy of its password and grants) or dropped.

use super::{Mariadb, SESSION};
use crate::local::access::{mariadb_accounts, Cidr};
use crate::local::quote::{mariadb_account, mariadb_literal};
use crate::local::{proc, Instance, LocalError};

/// `sql` through the client with `--raw` (values as stored, no batch escaping).
async fn query(m: &Mariadb, inst: &Instance, sql: &str) -> Result<String, LocalError> {
    let mut cmd = m.client(inst);
    cmd.arg("--raw");
    let script = format!("{SESSION}{sql}\n");
    proc::run(cmd, Some(&script), &[], m.opts.timeout).await
}

/// How SHOW GRANTS names an account: `` `user`@`host` ``.
fn shown(name: &str, host: &str) -> String {
    format!(
        "`{}`@`{}`",
        name.replace('`', "``"),
        host.replace('`', "``")
    )
}

/// Applies the rules to the account `name@host`. `own` are the hosts of this name's own
/// accounts (never dropped); accounts at other CIDR hosts (`…/…`) are troved's and are
/// dropped when the rules of none of this name's existing own accounts ask for them
/// (`app@'%'` and `app@'10.1.1.1'` side by side keep the CIDR accounts the first one
/// needs; a dropped or renamed `app@'%'` takes its copies with it). The copies are made
/// anew each time, so they carry the account's password and grants of now (after a new
/// password, a grant or a revoke). An account that does not exist (a superuser whose
/// password is not set yet, a dropped user) gets no copies.
pub(super) async fn restrict_account(
    m: &Mariadb,
    inst: &Instance,
    (name, host): (&str, &str),
    own: &[&str],
    allowed: &[Cidr],
) -> Result<(), LocalError> {
    let list = format!(
        "SELECT Host FROM mysql.global_priv WHERE User = {};",
        mariadb_literal(name)?
    );
    let hosts: Vec<String> = query(m, inst, &list)
        .await?
        .lines()
        .map(str::to_string)
        .collect();
    let exists = |h: &str| hosts.iter().any(|x| x == h);
    let wanted: Vec<String> = own
        .iter()
        .chain([&host])
        .filter(|h| exists(h))
        .flat_map(|h| mariadb_accounts(h, allowed).extra_hosts)
        .collect();
    let mut sql = String::new();
    for h in &hosts {
        let ours = h.contains('/') && !own.contains(&h.as_str());
        if ours && !wanted.contains(h) {
            sql.push_str(&format!(
                "DROP USER IF EXISTS {};\n",
                mariadb_account(name, h)?
            ));
        }
    }
    if !exists(host) {
        if !sql.is_empty() {
            m.sql(inst, &format!("SET SESSION sql_log_bin = 0;\n{sql}"), &[])
                .await?;
        }
        return Ok(());
    }
    let plan = mariadb_accounts(host, allowed);
    let account = mariadb_account(name, host)?;
    let mut hashes = Vec::new();
    if !plan.extra_hosts.is_empty() {
        let grants = query(m, inst, &format!("SHOW GRANTS FOR {account};")).await?;
        let from = format!(" TO {} ", shown(name, host));
        for extra in plan
            .extra_hosts
            .iter()
            .filter(|h| !own.contains(&h.as_str()))
        {
            // Anew: a grant revoked since must not survive in the copy.
            let copy = mariadb_account(name, extra)?;
            sql.push_str(&format!(
                "DROP USER IF EXISTS {copy};\nCREATE USER {copy};\n"
            ));
            let to = format!(" TO {} ", shown(name, extra));
            for grant in grants.lines() {
                let grant = format!("{grant} ");
                if !grant.contains(&from) {
                    return Err(LocalError::Unusable(format!(
                        "cannot copy the grants of {name}: unexpected SHOW GRANTS output"
                    )));
                }
                hashes.extend(quoted_after(&grant, "PASSWORD "));
                sql.push_str(&format!("{};\n", grant.replacen(&from, &to, 1).trim_end()));
            }
        }
    }
    let lock = if plan.open { "UNLOCK" } else { "LOCK" };
    sql.push_str(&format!("ALTER USER {account} ACCOUNT {lock};\n"));
    // The copied grants carry the password's hash, never the password; a hash logs in
    // as well (mysql_native_password), so an error quoting the script hides it. Out of
    // the binary log: access is each server's own, and a primary's rules replayed on its
    // replicas would replace theirs (or stop replication on an account one lacks).
    let sql = format!("SET SESSION sql_log_bin = 0;\n{sql}");
    let secrets: Vec<&str> = hashes.iter().map(String::as_str).collect();
    m.sql(inst, &sql, &secrets).await.map(drop)
}

/// The single-quoted strings that follow `marker` in `text` (`PASSWORD '*94BD…'`).
fn quoted_after(text: &str, marker: &str) -> Vec<String> {
    text.match_indices(marker)
        .filter_map(|(i, _)| {
            let rest = text[i + marker.len()..].strip_prefix('\'')?;
            rest.find('\'').map(|end| rest[..end].to_string())
        })
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::quoted_after;

    #[test]
    fn password_hashes_in_grants_are_found_for_redaction() {
        let grant = "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29'";
        assert_eq!(
            quoted_after(grant, "PASSWORD "),
            vec!["*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29".to_string()]
        );
        assert!(quoted_after("GRANT ALL ON `db`.* TO `app`@`%`", "PASSWORD ").is_empty());
    }
}
