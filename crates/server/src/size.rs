//! Human-readable byte sizes: parsing (`--quota 5GiB`, config values) and formatting
//! (`ferryd user list`). Owns the size syntax described in docs/CONTRACT.md.
//!
//! Syntax: a non-negative decimal number, optional whitespace, optional case-insensitive unit.
//! `B` = 1; `KiB`/`MiB`/`GiB`/`TiB` = powers of 1024; `KB`/`MB`/`GB`/`TB` = powers of 1000 (SI);
//! a bare `K`/`M`/`G`/`T` is binary, like `ls -h`. `unlimited` means no limit (`None`).
//! Fractions (`1.5GiB`) are allowed; the result is rounded down to whole bytes, except that a
//! fractional number of plain bytes (`1.5`, `1.5B`) is rejected because it can only be a typo.

use thiserror::Error;

/// Why a size string was rejected. Every message quotes the offending input so CLI and config
/// errors can be shown to the operator as-is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SizeError {
    #[error("empty size")]
    Empty,
    #[error("size '{0}' is negative")]
    Negative(String),
    #[error("invalid size '{0}' (expected e.g. 8388608, 512MiB, 5GiB, 10MB or unlimited)")]
    Invalid(String),
    #[error(
        "unknown unit '{unit}' in size '{value}' (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
    )]
    UnknownUnit { value: String, unit: String },
    #[error("size '{0}' is too large (max {max} bytes)", max = u64::MAX)]
    Overflow(String),
    #[error("size '{0}' is not a whole number of bytes")]
    FractionalBytes(String),
}

/// More fractional digits than this cannot change the result for any supported unit
/// (1 TB = 10^12 bytes), and the cap keeps the u128 arithmetic below from overflowing.
const MAX_FRACTION_DIGITS: usize = 18;

/// Parses a size; `Ok(None)` means "unlimited".
pub fn parse_size(s: &str) -> Result<Option<u64>, SizeError> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(SizeError::Empty);
    }
    if trimmed.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    if trimmed.starts_with('-') {
        return Err(SizeError::Negative(trimmed.to_owned()));
    }

    let num_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, rest) = trimmed.split_at(num_end);
    let unit = rest.trim_start();

    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    // "" and "." have no digits at all; in "1.2.3" the second dot lands in frac_part.
    // "5." and ".5" are accepted, as most tools do.
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return Err(SizeError::Invalid(trimmed.to_owned()));
    }

    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(SizeError::UnknownUnit {
                value: trimmed.to_owned(),
                unit: unit.to_owned(),
            })
        }
    };

    // All characters are ASCII digits here, so a parse failure can only mean "too many digits".
    let int_value: u128 = if int_part.is_empty() {
        0
    } else {
        int_part
            .parse()
            .map_err(|_| SizeError::Overflow(trimmed.to_owned()))?
    };
    let frac_digits = &frac_part[..frac_part.len().min(MAX_FRACTION_DIGITS)];
    let frac_value: u128 = if frac_digits.is_empty() {
        0
    } else {
        frac_digits
            .parse()
            .map_err(|_| SizeError::Invalid(trimmed.to_owned()))?
    };
    let frac_scale = 10u128.pow(frac_digits.len() as u32);

    let whole = int_value
        .checked_mul(u128::from(multiplier))
        .ok_or_else(|| SizeError::Overflow(trimmed.to_owned()))?;
    // frac_value < 10^18 and multiplier <= 2^40, so this product fits easily in u128.
    let frac_scaled = frac_value * u128::from(multiplier);
    if multiplier == 1 && frac_value != 0 {
        return Err(SizeError::FractionalBytes(trimmed.to_owned()));
    }
    let total = whole
        .checked_add(frac_scaled / frac_scale)
        .ok_or_else(|| SizeError::Overflow(trimmed.to_owned()))?;
    u64::try_from(total)
        .map(Some)
        .map_err(|_| SizeError::Overflow(trimmed.to_owned()))
}

const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// Formats a byte count with binary units and one decimal: `0 B`, `1023 B`, `1.5 KiB`,
/// `512.0 MiB`. The output is accepted by [`parse_size`] (rounded to 0.1 of the unit).
pub fn format_size(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut exp = 1;
    loop {
        let divisor = 1u128 << (10 * exp);
        // Round to the nearest tenth in integer arithmetic (f64 would lose precision near EiB).
        let tenths = (u128::from(bytes) * 10 + divisor / 2) / divisor;
        // Move up a unit if rounding would print "1024.0 KiB".
        if tenths < 10 * 1024 || exp == UNITS.len() - 1 {
            return format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[exp]);
        }
        exp += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Option<u64> {
        match parse_size(s) {
            Ok(v) => v,
            Err(e) => panic!("parse_size({s:?}) failed: {e}"),
        }
    }

    #[test]
    fn plain_numbers_and_units() {
        assert_eq!(ok("8388608"), Some(8_388_608));
        assert_eq!(ok("0"), Some(0));
        assert_eq!(ok("512MiB"), Some(512 << 20));
        assert_eq!(ok("5GiB"), Some(5 << 30));
        assert_eq!(ok("1KiB"), Some(1024));
        assert_eq!(ok("10MB"), Some(10_000_000));
        assert_eq!(ok("3kb"), Some(3_000));
        assert_eq!(ok("2GB"), Some(2_000_000_000));
        assert_eq!(ok("1TB"), Some(1_000_000_000_000));
        assert_eq!(ok("1TiB"), Some(1 << 40));
        assert_eq!(ok("7B"), Some(7));
        assert_eq!(ok("7b"), Some(7));
    }

    #[test]
    fn bare_letters_are_binary() {
        assert_eq!(ok("1K"), Some(1024));
        assert_eq!(ok("1m"), Some(1 << 20));
        assert_eq!(ok("1G"), Some(1 << 30));
        assert_eq!(ok("1t"), Some(1 << 40));
    }

    #[test]
    fn case_and_whitespace() {
        assert_eq!(ok("5gib"), Some(5 << 30));
        assert_eq!(ok("5GIB"), Some(5 << 30));
        assert_eq!(ok(" 512 MiB "), Some(512 << 20));
        assert_eq!(ok("UNLIMITED"), None);
        assert_eq!(ok("unlimited"), None);
        assert_eq!(ok("Unlimited"), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(ok("1.5GiB"), Some(3 << 29));
        assert_eq!(ok("0.5KiB"), Some(512));
        assert_eq!(ok(".5K"), Some(512));
        assert_eq!(ok("2.KiB"), Some(2048));
        assert_eq!(ok("1.25MB"), Some(1_250_000));
        // 0.1 KiB = 102.4 bytes -> rounded down.
        assert_eq!(ok("0.1KiB"), Some(102));
        assert_eq!(ok("1.0"), Some(1));
        // Excess fractional digits are ignored rather than overflowing.
        assert_eq!(ok("1.0000000000000000000000000001KiB"), Some(1024));
    }

    #[test]
    fn format_output_round_trips_closely() {
        assert_eq!(ok("512.0 MiB"), Some(512 << 20));
        assert_eq!(ok(&format_size(5 << 30)), Some(5 << 30));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("   "), Err(SizeError::Empty));
        assert!(matches!(parse_size("-1"), Err(SizeError::Negative(_))));
        assert!(matches!(parse_size("-5GiB"), Err(SizeError::Negative(_))));
        assert!(matches!(parse_size("abc"), Err(SizeError::Invalid(_))));
        assert!(matches!(
            parse_size("5XB"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("5 G B"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(parse_size("."), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_size("1.2.3"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_size("+5"), Err(SizeError::Invalid(_))));
        assert!(matches!(
            parse_size("1.5"),
            Err(SizeError::FractionalBytes(_))
        ));
        assert!(matches!(
            parse_size("1.5B"),
            Err(SizeError::FractionalBytes(_))
        ));
    }

    #[test]
    fn overflow() {
        assert_eq!(ok("18446744073709551615"), Some(u64::MAX));
        assert!(matches!(
            parse_size("18446744073709551616"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("16777216TiB"),
            Err(SizeError::Overflow(_))
        ));
        assert_eq!(ok("16777215TiB"), Some(16_777_215 << 40));
        assert!(matches!(
            parse_size("99999999999999999999999999999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn error_messages_mention_the_value() {
        let msg = parse_size("12parsecs").expect_err("must fail").to_string();
        assert!(msg.contains("12parsecs"), "{msg}");
        assert!(msg.contains("parsecs"), "{msg}");
        let msg = parse_size("-3").expect_err("must fail").to_string();
        assert!(msg.contains("-3") && msg.contains("negative"), "{msg}");
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1), "1 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(512 << 20), "512.0 MiB");
        assert_eq!(format_size(5 << 30), "5.0 GiB");
        assert_eq!(format_size(1 << 40), "1.0 TiB");
        // Rounds up into the next unit instead of printing "1024.0 KiB".
        assert_eq!(format_size((1 << 20) - 1), "1.0 MiB");
        assert_eq!(format_size(u64::MAX), "16.0 EiB");
    }
}
