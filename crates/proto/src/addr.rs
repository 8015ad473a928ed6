//! Data-connection addresses in their wire forms: PORT and the 227 reply (RFC 959 §4.1.2,
//! "h1,h2,h3,h4,p1,p2"), EPRT and the 229 reply (RFC 2428, "|proto|addr|port|").

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::command::ParseError;

/// Parses the argument of PORT, "h1,h2,h3,h4,p1,p2".
pub fn parse_port(arg: &str) -> Option<SocketAddr> {
    let mut nums = [0u8; 6];
    let mut parts = arg.trim().split(',');
    for n in nums.iter_mut() {
        *n = parts.next()?.trim().parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    let ip = Ipv4Addr::new(nums[0], nums[1], nums[2], nums[3]);
    let port = u16::from(nums[4]) << 8 | u16::from(nums[5]);
    Some(SocketAddr::new(IpAddr::V4(ip), port))
}

/// "h1,h2,h3,h4,p1,p2" for an IPv4 address (None for IPv6, which PORT cannot carry).
pub fn format_port(addr: &SocketAddr) -> Option<String> {
    match addr.ip() {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            let p = addr.port();
            Some(format!(
                "{},{},{},{},{},{}",
                o[0],
                o[1],
                o[2],
                o[3],
                p >> 8,
                p & 0xff
            ))
        }
        IpAddr::V6(_) => None,
    }
}

/// Parses the argument of EPRT, "|1|132.235.1.2|6275|" or "|2|::1|6275|"; any printable
/// character may stand for '|' (RFC 2428 §2).
pub fn parse_eprt(arg: &str) -> Result<SocketAddr, ParseError> {
    let syntax = || ParseError::Syntax("EPRT needs |proto|address|port|".into());
    let delim = arg.chars().next().ok_or_else(syntax)?;
    if !(33..=126).contains(&(delim as u32)) {
        return Err(syntax());
    }
    let parts: Vec<&str> = arg.split(delim).collect();
    // "", proto, addr, port, ""
    if parts.len() != 5 || !parts[0].is_empty() || !parts[4].is_empty() {
        return Err(syntax());
    }
    let port: u16 = parts[3].parse().map_err(|_| syntax())?;
    let ip: IpAddr = match parts[1] {
        "1" => IpAddr::V4(parts[2].parse().map_err(|_| syntax())?),
        "2" => IpAddr::V6(parts[2].parse().map_err(|_| syntax())?),
        _ => return Err(ParseError::Protocol),
    };
    Ok(SocketAddr::new(ip, port))
}

/// "|1|addr|port|" or "|2|addr|port|".
pub fn format_eprt(addr: &SocketAddr) -> String {
    let proto = if addr.is_ipv4() { 1 } else { 2 };
    format!("|{proto}|{}|{}|", addr.ip(), addr.port())
}

/// Text of the 227 reply: "Entering Passive Mode (h1,h2,h3,h4,p1,p2)."
pub fn pasv_reply_text(ip: Ipv4Addr, port: u16) -> String {
    let addr = SocketAddr::new(IpAddr::V4(ip), port);
    format!(
        "Entering Passive Mode ({}).",
        format_port(&addr).unwrap_or_default()
    )
}

/// Text of the 229 reply: "Entering Extended Passive Mode (|||port|)".
pub fn epsv_reply_text(port: u16) -> String {
    format!("Entering Extended Passive Mode (|||{port}|)")
}

/// Finds the address in a 227 reply text, wherever the parenthesis (if any) is.
pub fn parse_pasv_reply(text: &str) -> Option<SocketAddr> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == ','))
        .unwrap_or(rest.len());
    parse_port(&rest[..end])
}

/// Finds the port in a 229 reply text: "(|||port|)".
pub fn parse_epsv_reply(text: &str) -> Option<u16> {
    let open = text.find('(')?;
    let close = text[open..].find(')')? + open;
    let inner = &text[open + 1..close];
    let delim = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(delim).collect();
    if parts.len() != 5 {
        return None;
    }
    parts[3].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_round_trip_and_rejects() {
        let a = parse_port("127,0,0,1,4,1").expect("valid");
        assert_eq!(a, "127.0.0.1:1025".parse().expect("addr"));
        assert_eq!(format_port(&a).as_deref(), Some("127,0,0,1,4,1"));
        assert_eq!(parse_port("127,0,0,1,4"), None);
        assert_eq!(parse_port("127,0,0,1,4,1,1"), None);
        assert_eq!(parse_port("256,0,0,1,4,1"), None);
        assert_eq!(parse_port("a,b,c,d,e,f"), None);
    }

    #[test]
    fn eprt_forms() {
        assert_eq!(
            parse_eprt("|1|132.235.1.2|6275|"),
            Ok("132.235.1.2:6275".parse().expect("a"))
        );
        assert_eq!(
            parse_eprt("|2|::1|6275|"),
            Ok("[::1]:6275".parse().expect("a"))
        );
        assert_eq!(
            parse_eprt("!1!10.0.0.1!21!"),
            Ok("10.0.0.1:21".parse().expect("a"))
        );
        assert_eq!(parse_eprt("|3|x|1|"), Err(ParseError::Protocol));
        assert!(matches!(
            parse_eprt("|1|::1|1|"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse_eprt("|1|1.2.3.4|99999|"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse_eprt("|1|1.2.3.4|"),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn passive_reply_texts_parse_back() {
        let t = pasv_reply_text(Ipv4Addr::new(10, 1, 2, 3), 50001);
        assert_eq!(t, "Entering Passive Mode (10,1,2,3,195,81).");
        assert_eq!(
            parse_pasv_reply(&t),
            Some("10.1.2.3:50001".parse().expect("a"))
        );
        let t = epsv_reply_text(50001);
        assert_eq!(t, "Entering Extended Passive Mode (|||50001|)");
        assert_eq!(parse_epsv_reply(&t), Some(50001));
    }
}
