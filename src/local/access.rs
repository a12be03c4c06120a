//! Who may log in over the network: `access.allowed_cidrs` as each engine expresses it.
//!
//! - **No CIDRs** (upstream: "not providing allowed_cidrs means allowing everything"):
//!   PostgreSQL's `pg_hba.conf` lets any address log in with a SCRAM password; each
//!   MariaDB user logs in from its own host pattern (`%` unless the create gave one).
//! - **CIDRs**: PostgreSQL gets one `host all all <cidr> scram-sha-256` line per CIDR and
//!   no other `host` line, for every user (the superuser too). MariaDB cannot attach a
//!   CIDR to an account, only one host pattern per account, so each user's account at its
//!   own host stays (it holds the password and the grants) and the user's host decides:
//!   - `%` (any host): the `%` account is locked (`ACCOUNT LOCK`) and the user gets one
//!     more account per CIDR, `'user'@'a.b.c.d/m.m.m.m'` (MariaDB's `ip/netmask`
//!     pattern), with the same password and grants. MariaDB matches the most specific
//!     pattern first, so a login from inside a CIDR uses its account and one from
//!     anywhere else falls to the locked `%` account and is refused;
//!   - an IPv4 address inside one of the CIDRs: the account stays open (the user's host
//!     is the narrower rule);
//!   - anything else (an address outside the CIDRs, a name or a wildcard pattern, which
//!     cannot be intersected with a CIDR): the account is locked: fail closed.
//!
//!   The superuser account (`root@'%'`) follows the same rule as a `%` user.
//!
//! The rules are applied at prepare and again after every access update (the guest
//! port's `restrict_access`), replacing what was there: PostgreSQL rewrites
//! `pg_hba.conf` and reloads; MariaDB creates, drops, locks and unlocks accounts.

use std::net::Ipv4Addr;

use super::LocalError;

/// An IPv4 CIDR (`a.b.c.d/n`, or an address alone for `/32`), as network and prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits cleared).
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, LocalError> {
        let bad = || LocalError::invalid("CIDR", s.to_string());
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, p.parse::<u8>().map_err(|_| bad())?),
            None => (s, 32),
        };
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let network = Ipv4Addr::from(u32::from(ip) & mask(prefix));
        Ok(Cidr { network, prefix })
    }

    /// The netmask, dotted (`255.255.255.0`).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    /// MariaDB's host pattern for it: `network/netmask`.
    pub fn mariadb_host(&self) -> String {
        format!("{}/{}", self.network, self.netmask())
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// The CIDRs of `allowed`, each once.
pub fn parse_all(allowed: &[String]) -> Result<Vec<Cidr>, LocalError> {
    let mut out: Vec<Cidr> = Vec::new();
    for c in allowed {
        let c = Cidr::parse(c)?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// PostgreSQL's `pg_hba.conf`: the private socket trusted (troved's administration
/// path, and the one its replicas copy and follow over: `all` does not cover replication
/// connections, so they get their own line, in every file written, or the next access
/// change would cut a replica off at the primary's next restart), network logins with a
/// SCRAM password from `allowed` only (none: from anywhere).
pub fn pg_hba(allowed: &[Cidr]) -> String {
    let mut text = String::from(
        "# Written by troved; replaced on each access change. The socket directory is\n\
         # private to the database user (0700), so local connections are trusted; network\n\
         # connections need a SCRAM password, from the instance's allowed CIDRs only.\n\
         local all all trust\n\
         local replication all trust\n",
    );
    if allowed.is_empty() {
        text.push_str("host all all all scram-sha-256\n");
    }
    for c in allowed {
        text.push_str(&format!("host all all {c} scram-sha-256\n"));
    }
    text
}

/// What MariaDB does with a user's account at `host`, given the allowed CIDRs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MariadbAccounts {
    /// Whether the account at the user's own host stays open.
    pub open: bool,
    /// The extra host patterns (one per CIDR) the user gets accounts at.
    pub extra_hosts: Vec<String>,
}

/// The module docs' rule for a user (or the superuser) at `host`.
pub fn mariadb_accounts(host: &str, allowed: &[Cidr]) -> MariadbAccounts {
    if allowed.is_empty() {
        return MariadbAccounts {
            open: true,
            extra_hosts: Vec::new(),
        };
    }
    if host == "%" {
        return MariadbAccounts {
            open: false,
            extra_hosts: allowed.iter().map(Cidr::mariadb_host).collect(),
        };
    }
    let inside = host
        .parse::<Ipv4Addr>()
        .is_ok_and(|ip| allowed.iter().any(|c| c.contains(ip)));
    MariadbAccounts {
        open: inside,
        extra_hosts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        parse_all(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn cidrs_parse_to_their_network() {
        let c = Cidr::parse("10.1.2.3/8").unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert_eq!(c.mariadb_host(), "10.0.0.0/255.0.0.0");
        assert_eq!(Cidr::parse("1.2.3.4").unwrap().to_string(), "1.2.3.4/32");
        assert_eq!(
            Cidr::parse("0.0.0.0/0").unwrap().netmask(),
            Ipv4Addr::UNSPECIFIED
        );
        assert!(c.contains("10.200.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        for bad in ["::/0", "1.2.3.4/33", "1.2.3/8", "x", "1.2.3.4/"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(cidrs(&["1.2.3.4/32", "1.2.3.4"]).len(), 1);
    }

    #[test]
    fn pg_hba_has_a_catch_all_only_without_cidrs() {
        assert!(pg_hba(&[]).contains("host all all all scram-sha-256"));
        let text = pg_hba(&cidrs(&["127.0.0.2/32", "10.0.0.0/8"]));
        assert!(!text.contains("host all all all"), "{text}");
        assert!(text.contains("host all all 127.0.0.2/32 scram-sha-256\n"));
        assert!(text.contains("host all all 10.0.0.0/8 scram-sha-256\n"));
        assert!(text.contains("local all all trust\n"));
    }

    #[test]
    fn pg_hba_always_lets_replicas_follow_over_the_socket() {
        for allowed in [vec![], cidrs(&["10.0.0.0/8"])] {
            let text = pg_hba(&allowed);
            assert!(text.contains("\nlocal replication all trust\n"), "{text}");
            // Never over the network: replicas use the private socket.
            assert!(!text.contains("host replication"), "{text}");
        }
    }

    #[test]
    fn mariadb_hosts_never_widen_a_users_own_host() {
        let none = mariadb_accounts("%", &[]);
        assert!(none.open && none.extra_hosts.is_empty());
        let allowed = cidrs(&["10.0.0.0/8"]);
        let any = mariadb_accounts("%", &allowed);
        assert!(!any.open);
        assert_eq!(any.extra_hosts, vec!["10.0.0.0/255.0.0.0".to_string()]);
        assert!(mariadb_accounts("10.1.1.1", &allowed).open);
        assert!(!mariadb_accounts("192.168.1.1", &allowed).open);
        let pattern = mariadb_accounts("10.%", &allowed);
        assert!(!pattern.open && pattern.extra_hosts.is_empty());
    }
}
