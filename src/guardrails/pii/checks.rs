//! The checks that make a number-shaped match personal data: Luhn and
//! issuer ranges (cards), per-country lengths and mod 97 (IBANs), US SSN
//! ranges, and phone numbers by country code, length and leading digit.

use super::*;

/// Luhn's check over ASCII digits (ours: a few lines, fully specified).
pub(super) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// What a card-shaped candidate is: `None` if not a card number (grouping,
/// 12 to 19 digits, Luhn); `Some(true)` when a known issuer issues numbers
/// of its prefix and length; `Some(false)` for a Luhn-valid number of no
/// known issuer (a card only where the text says so).
pub(super) fn card(candidate: &str) -> Option<bool> {
    let mut digits = [0u8; 19];
    let mut n = 0;
    let mut groups = [0u8; 19];
    let mut g = 0;
    let mut separator = None;
    for &b in candidate.as_bytes() {
        if b.is_ascii_digit() {
            if n == digits.len() {
                return None;
            }
            digits[n] = b;
            n += 1;
            groups[g] += 1;
        } else {
            // One kind of separator, between groups.
            if separator.is_some_and(|s| s != b) {
                return None;
            }
            separator = Some(b);
            g += 1;
        }
    }
    let groups = &groups[..=g];
    let grouping_ok = g == 0
        || matches!(groups, [4, 6, 5] | [4, 6, 4])
        || groups.iter().take(g).all(|&l| l == 4) && (1..=4).contains(&groups[g]);
    let digits = &digits[..n];
    if !grouping_ok || n < 12 || !luhn(digits) {
        return None;
    }
    Some(n >= 13 && issuer_accepts(digits))
}

/// Whether an issuer (IIN range) issues numbers of this length.
pub(super) fn issuer_accepts(digits: &[u8]) -> bool {
    let len = digits.len();
    let prefix = |k: usize| -> u32 {
        digits[..k]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'))
    };
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    let visa = p1 == 4 && matches!(len, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16;
    let amex = matches!(p2, 34 | 37) && len == 15;
    let discover =
        (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) || (622_126..=622_925).contains(&p6))
            && (16..=19).contains(&len);
    let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&len)
        || matches!(p4, 1800 | 2131) && len == 15;
    let diners = ((300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39))
        && (14..=19).contains(&len);
    let unionpay = p2 == 62 && (16..=19).contains(&len);
    let maestro = matches!(p4, 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761..=6763)
        && (13..=19).contains(&len);
    let mir = (2200..=2204).contains(&p4) && (16..=19).contains(&len);
    let rupay = (p2 == 60 || p2 == 81 || p2 == 82 || p3 == 508) && len == 16;
    let troy = p4 == 9792 && len == 16;
    visa || mastercard
        || amex
        || discover
        || jcb
        || diners
        || unionpay
        || maestro
        || mir
        || rupay
        || troy
}

/// IBAN lengths by country (the IBAN registry's published lengths).
pub(super) const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HN", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

/// If `candidate` starts with a valid IBAN, its length in bytes (the
/// regex may run on into a following group).
pub(super) fn iban_len(candidate: &str) -> Option<usize> {
    let bytes = candidate.as_bytes();
    let country: &[u8] = bytes.get(..2)?;
    let &(_, len) = IBAN_LENGTHS.iter().find(|(c, _)| c.as_slice() == country)?;
    // Walk to the len-th alphanumeric character; the IBAN must end there,
    // at the candidate's end or before a space.
    let mut count = 0;
    let mut end = None;
    for (i, &b) in bytes.iter().enumerate() {
        if b != b' ' {
            count += 1;
            if count == len {
                end = Some(i + 1);
                break;
            }
        }
    }
    let end = end?;
    if end < bytes.len() && bytes[end] != b' ' {
        return None;
    }
    let compact = bytes[..end].iter().filter(|&&b| b != b' ');
    let rearranged = compact.clone().skip(4).chain(compact.take(4));
    // mod 97 over the digits, letters as 10–35 (ours: fully specified).
    let mut rem = 0u32;
    for &b in rearranged {
        rem = match b {
            b'0'..=b'9' => (rem * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(b - b'A') + 10) % 97,
            _ => return None,
        };
    }
    (rem == 1).then_some(end)
}

/// US SSN ranges: area not 000, 666 or 9xx; group not 00; serial not
/// 0000. `s` holds 9 digits and optional separators.
pub(super) fn is_ssn(s: &[u8]) -> bool {
    let mut d = [0u8; 9];
    let mut n = 0;
    for &b in s.iter().filter(|b| b.is_ascii_digit()) {
        if n == 9 {
            return false;
        }
        d[n] = b - b'0';
        n += 1;
    }
    if n != 9 {
        return false;
    }
    let area = u16::from(d[0]) * 100 + u16::from(d[1]) * 10 + u16::from(d[2]);
    let group = d[3] * 10 + d[4];
    let serial = d[5..].iter().any(|&x| x != 0);
    area != 0 && area != 666 && area < 900 && group != 0 && serial
}

/// Country code, national significant number length, and the digits a
/// national number may start with ("" for any but 0). From the ITU
/// numbering plans, for the ~56 most used countries.
pub(super) const COUNTRIES: &[(u16, u8, u8, &str)] = &[
    (1, 10, 10, "23456789"),
    (7, 10, 10, "346789"),
    (20, 8, 10, "123456789"),
    (27, 9, 9, ""),
    (30, 10, 10, "26789"),
    (31, 9, 9, ""),
    (32, 8, 9, ""),
    (33, 9, 9, ""),
    (34, 9, 9, "6789"),
    (36, 8, 9, ""),
    (39, 6, 11, "0389"),
    (40, 9, 9, "23789"),
    (41, 9, 9, ""),
    (43, 4, 13, ""),
    (44, 9, 10, "1235789"),
    (45, 8, 8, ""),
    (46, 7, 10, ""),
    (47, 8, 8, "2345789"),
    (48, 9, 9, ""),
    (49, 6, 13, ""),
    (51, 8, 9, ""),
    (52, 10, 10, ""),
    (54, 10, 11, ""),
    (55, 10, 11, ""),
    (56, 9, 9, ""),
    (57, 8, 10, ""),
    (58, 10, 10, ""),
    (60, 8, 10, ""),
    (61, 9, 9, "23478"),
    (62, 8, 12, ""),
    (63, 8, 10, ""),
    (64, 8, 10, ""),
    (65, 8, 8, "3689"),
    (66, 8, 9, ""),
    (81, 9, 10, ""),
    (82, 8, 10, ""),
    (84, 9, 10, ""),
    (86, 10, 11, ""),
    (90, 10, 10, "234589"),
    (91, 10, 10, ""),
    (92, 9, 10, ""),
    (94, 9, 9, ""),
    (98, 10, 10, ""),
    (212, 9, 9, ""),
    (234, 8, 10, ""),
    (254, 9, 9, ""),
    (351, 9, 9, "2789"),
    (353, 7, 9, ""),
    (358, 5, 12, ""),
    (380, 9, 9, ""),
    (420, 9, 9, ""),
    (852, 8, 8, ""),
    (886, 8, 9, ""),
    (966, 9, 9, ""),
    (971, 8, 9, ""),
    (972, 8, 9, ""),
];

/// The longest valid international number at the start of `candidate`
/// (`+…` or `00…`): its length in bytes and score.
pub(super) fn international_phone(candidate: &str) -> Option<(usize, f32)> {
    let bytes = candidate.as_bytes();
    let body = if bytes[0] == b'+' { 1 } else { 2 };
    // A `00` prefix without any separator is an ordinary digit run.
    if body == 2 && !bytes.iter().any(|b| !b.is_ascii_digit()) {
        return None;
    }
    // The ends of digit groups, longest first: the regex may have run on
    // into a following number.
    let mut digits = [0u8; 24];
    let mut n = 0;
    let mut ends = [(0usize, 0usize); 12];
    let mut groups = 0;
    let mut i = body;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            // "(0)" after the country code is the trunk prefix, not dialled.
            if n == 0
                || bytes[i] != b'0'
                || !(i > 0 && bytes[i - 1] == b'(' && bytes.get(i + 1) == Some(&b')'))
            {
                if n == digits.len() {
                    break;
                }
                digits[n] = bytes[i];
                n += 1;
            }
            if bytes.get(i + 1).is_none_or(|b| !b.is_ascii_digit()) {
                if groups == ends.len() {
                    break;
                }
                let end = if bytes.get(i + 1) == Some(&b')') {
                    i + 2
                } else {
                    i + 1
                };
                ends[groups] = (end, n);
                groups += 1;
            }
        }
        i += 1;
    }
    ends[..groups]
        .iter()
        .rev()
        .find_map(|&(end, n)| phone_digits_valid(&digits[..n]).map(|score| (end, score)))
}

/// Whether country code + national number digits form a valid number.
pub(super) fn phone_digits_valid(digits: &[u8]) -> Option<f32> {
    if !(8..=15).contains(&digits.len()) {
        return None;
    }
    for cc_len in 1..=3 {
        let cc = digits[..cc_len]
            .iter()
            .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
        let Some(&(_, min, max, lead)) = COUNTRIES.iter().find(|c| c.0 == cc) else {
            continue;
        };
        let national = &digits[cc_len..];
        let lead_ok = if lead.is_empty() {
            national[0] != b'0'
        } else {
            lead.as_bytes().contains(&national[0])
        };
        let len_ok = (usize::from(min)..=usize::from(max)).contains(&national.len());
        let nanp_ok = cc != 1 || nanp_codes_ok(national);
        return (lead_ok && len_ok && nanp_ok).then_some(1.0);
    }
    // A country we have no plan for: E.164 shape only.
    Some(0.5)
}

/// NANP area and exchange codes: NXX, not N11.
pub(super) fn nanp_codes_ok(national: &[u8]) -> bool {
    let code_ok = |c: &[u8]| c[0] >= b'2' && !(c[1] == b'1' && c[2] == b'1');
    national.len() == 10 && code_ok(&national[..3]) && code_ok(&national[3..6])
}

/// A NANP number in a clear format (`(415) 555-0132`, `415.555.0132`).
pub(super) fn is_nanp(candidate: &str) -> bool {
    let mut digits = [0u8; 11];
    let mut n = 0;
    for b in candidate.bytes().filter(u8::is_ascii_digit) {
        if n == digits.len() {
            return false;
        }
        digits[n] = b;
        n += 1;
    }
    let national = match n {
        10 => &digits[..10],
        11 if digits[0] == b'1' => &digits[1..11],
        _ => return false,
    };
    nanp_codes_ok(national)
}

pub(super) fn ip_score(ip: IpAddr) -> f32 {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            let shared = a == 100 && (64..128).contains(&b);
            let documentation = matches!(
                ip.octets(),
                [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _]
            );
            if ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                || documentation
                || a >= 240
                || a == 0
            {
                0.2
            } else if ip.is_private() || ip.is_link_local() || shared {
                0.5
            } else {
                1.0
            }
        }
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                return ip_score(IpAddr::V4(v4));
            }
            let first = ip.segments()[0];
            let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8;
            if documentation || ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
                0.2
            } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80 {
                0.5
            } else if first & 0xe000 == 0x2000 {
                1.0
            } else {
                0.2
            }
        }
    }
}
