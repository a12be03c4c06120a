//! `--local-ports`: the range database servers listen in, and finding a free port in it.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::str::FromStr;

/// An inclusive range of TCP ports, `FIRST-LAST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<PortRange, String> {
        let bad = || format!("{s:?} is not a port range FIRST-LAST (e.g. 30000-30999)");
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl PortRange {
    /// The lowest port of the range that is neither `reserved` nor in use on loopback
    /// or on `public_bind` (tried by binding it: a port some other program listens on
    /// is not free, whatever our state says).
    pub fn free_port(&self, reserved: &HashSet<u16>, public_bind: IpAddr) -> Option<u16> {
        (self.first..=self.last)
            .filter(|p| !reserved.contains(p))
            .find(|p| bindable(*p, IpAddr::V4(Ipv4Addr::LOCALHOST)) && bindable(*p, public_bind))
    }
}

fn bindable(port: u16, ip: IpAddr) -> bool {
    TcpListener::bind((ip, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_bad_ones_are_refused() {
        assert_eq!(
            "30000-30999".parse::<PortRange>(),
            Ok(PortRange {
                first: 30000,
                last: 30999
            })
        );
        for bad in ["", "30000", "2-1", "0-5", "a-b", "1-70000"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_port_in_use_or_reserved_is_skipped() {
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let range = PortRange {
            first: port,
            last: port,
        };
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert_eq!(range.free_port(&HashSet::new(), any), None);
        drop(busy);
        assert_eq!(range.free_port(&HashSet::new(), any), Some(port));
        assert_eq!(range.free_port(&HashSet::from([port]), any), None);
    }
}
