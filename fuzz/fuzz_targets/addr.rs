//! PORT/EPRT arguments and 227/229 reply texts (ferry_proto::addr), both directions.
//!
//! The input is read twice: as text for the four parsers (parse -> format -> parse must give
//! the same address, and the formatted text must be a fixed point), and as bytes for an
//! address and port to format (format -> parse must give them back).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ferry_proto::addr::{
    epsv_reply_text, format_eprt, format_port, parse_eprt, parse_epsv_reply, parse_pasv_reply,
    parse_port, pasv_reply_text,
};
use libfuzzer_sys::fuzz_target;

fn port_round_trip(a: SocketAddr) {
    let text = format_port(&a).expect("an IPv4 address has a PORT form");
    assert_eq!(parse_port(&text), Some(a), "PORT {text}");
}

fn eprt_round_trip(a: SocketAddr) {
    let text = format_eprt(&a);
    assert_eq!(parse_eprt(&text), Ok(a), "EPRT {text}");
    assert_eq!(format_eprt(&parse_eprt(&text).expect("parsed")), text);
}

fn pasv_round_trip(ip: Ipv4Addr, port: u16) {
    let text = pasv_reply_text(ip, port);
    assert_eq!(
        parse_pasv_reply(&text),
        Some(SocketAddr::new(IpAddr::V4(ip), port)),
        "227 {text}"
    );
}

fn epsv_round_trip(port: u16) {
    let text = epsv_reply_text(port);
    assert_eq!(parse_epsv_reply(&text), Some(port), "229 {text}");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Some(a) = parse_port(&text) {
        assert!(a.is_ipv4());
        port_round_trip(a);
        pasv_round_trip(ip4(a), a.port());
    }
    if let Ok(a) = parse_eprt(&text) {
        eprt_round_trip(a);
        if a.is_ipv4() {
            port_round_trip(a);
        }
    }
    if let Some(a) = parse_pasv_reply(&text) {
        assert!(a.is_ipv4());
        pasv_round_trip(ip4(a), a.port());
        port_round_trip(a);
    }
    if let Some(port) = parse_epsv_reply(&text) {
        epsv_round_trip(port);
    }

    // The other direction: any address and port format and parse back.
    if data.len() >= 18 {
        let port = u16::from_be_bytes([data[0], data[1]]);
        let mut v6 = [0u8; 16];
        v6.copy_from_slice(&data[2..18]);
        let v4 = Ipv4Addr::new(data[2], data[3], data[4], data[5]);
        let a4 = SocketAddr::new(IpAddr::V4(v4), port);
        let a6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(v6)), port);
        port_round_trip(a4);
        eprt_round_trip(a4);
        eprt_round_trip(a6);
        assert_eq!(format_port(&a6), None, "PORT cannot carry IPv6");
        pasv_round_trip(v4, port);
        epsv_round_trip(port);
    }
});

fn ip4(a: SocketAddr) -> Ipv4Addr {
    match a.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => unreachable!("checked is_ipv4"),
    }
}
