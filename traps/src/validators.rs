//! Checksums that turn "looks like a number" into "is one": without them every order
//! number would be a card and every reference an IBAN.

/// Luhn (mod 10) over the digits, with a plausible card length and issuer prefix.
pub fn payment_card(text: &str) -> bool {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
    if !(13..=19).contains(&digits.len()) || !matches!(digits[0], 2..=6) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616: move the country and check digits to the end, letters to numbers, mod 97 = 1.
pub fn iban(text: &str) -> bool {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut remainder: u32 = 0;
    for &b in rearranged {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

/// US Social Security number: area not 000, 666 or 9xx; group and serial not zero.
pub fn us_ssn(text: &str) -> bool {
    let digits: Vec<u32> = text.bytes().filter(u8::is_ascii_digit).map(|b| u32::from(b - b'0')).collect();
    if digits.len() != 9 {
        return false;
    }
    let area = digits[0] * 100 + digits[1] * 10 + digits[2];
    let group = digits[3] * 10 + digits[4];
    let serial = digits[5..].iter().fold(0, |acc, d| acc * 10 + d);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Spanish DNI: eight digits and the control letter of their value mod 23.
pub fn es_dni(text: &str) -> bool {
    const LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    let bytes = text.as_bytes();
    if bytes.len() != 9 {
        return false;
    }
    let Ok(number) = text[..8].parse::<u32>() else {
        return false;
    };
    LETTERS[(number % 23) as usize] == bytes[8].to_ascii_uppercase()
}

/// Text that stands for a secret rather than being one: template and environment
/// references, redaction marks, documentation fillers.
pub fn not_placeholder(text: &str) -> bool {
    const MARKS: [&str; 16] = [
        "xxxx",
        "****",
        "....",
        "${",
        "{{",
        "<",
        "your",
        "example",
        "placeholder",
        "redacted",
        "dummy",
        "process.env",
        "environ",
        "getenv",
        "secrets.",
        "%s",
    ];
    let lower = text.to_ascii_lowercase();
    let first = text.as_bytes().first().copied();
    !MARKS.iter().any(|mark| lower.contains(mark)) && first != Some(b'$') && !text.bytes().all(|b| Some(b) == first)
}

/// A run of six identical characters (`xxxxxx`, `000000`): filler, not a key (a random
/// token of a key alphabet has one with odds of about one in ten million).
pub fn not_filler(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.windows(6).any(|w| w.iter().all(|b| b.eq_ignore_ascii_case(&w[0])))
}

/// A URL's password that is a well-known default or the service's own name
/// (`postgres://postgres:postgres@localhost`): what documentation and `.env.example`
/// files write, not a credential anyone keeps secret.
pub fn url_password(text: &str) -> bool {
    const DEFAULTS: [&str; 16] = [
        "password",
        "passwd",
        "postgres",
        "mysql",
        "root",
        "admin",
        "changeme",
        "secret",
        "pass",
        "test",
        "guest",
        "user",
        "redis",
        "rabbitmq",
        "minioadmin",
        "letmein",
    ];
    not_placeholder(text) && !DEFAULTS.iter().any(|d| text.eq_ignore_ascii_case(d))
}

/// Base64 that decodes to public material or to ordinary text: a PEM certificate or
/// public key (kubeconfig's `certificate-authority-data`, a ConfigMap's banner), or
/// prose. The private parts beside them (`client-key-data`, a token) decode to neither.
pub fn encodes_public_or_prose(token: &[u8]) -> bool {
    use base64::Engine;
    use base64::engine::DecodePaddingMode;
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);
    let body: &[u8] = {
        let end = token.iter().position(|&b| b == b'=').unwrap_or(token.len());
        &token[..end - end % 4]
    };
    if body.len() < 16 {
        return false;
    }
    let Some(decoded) = STANDARD.decode(body).ok().or_else(|| URL_SAFE.decode(body).ok()) else {
        return false;
    };
    if let Some(header) = decoded.strip_prefix(b"-----BEGIN ") {
        let header = &header[..header.len().min(40)];
        let names = |word: &[u8]| header.windows(word.len()).any(|w| w == word);
        return (names(b"CERTIFICATE") || names(b"PUBLIC KEY")) && !names(b"PRIVATE");
    }
    let Ok(text) = std::str::from_utf8(&decoded) else {
        return false;
    };
    let chars = text.chars().count();
    let spaces = text.chars().filter(|c| c.is_whitespace()).count();
    let readable =
        text.chars().filter(|c| c.is_alphabetic() || c.is_whitespace() || ".,;:!?'\"-()".contains(*c)).count();
    chars >= 12 && spaces * 12 >= chars && readable * 10 >= chars * 9
}

/// What a program would write where a value goes: `self.password`, `request.form[`,
/// `getpass()`, a dotted name with no digit in it.
fn looks_like_code(text: &str) -> bool {
    text.contains(['(', '[', '{'])
        || (text.contains('.')
            && !text.bytes().any(|b| b.is_ascii_digit())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'))
}

/// A value after a key word (`token = …`, `api key: …`) that is random enough to be the
/// key itself: long, letters and digits mixed, not a placeholder, words or code. From 12
/// to 15 characters (short keys exist) it must hold digits and letters of both cases.
pub fn random_token(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    let upper = bytes.iter().filter(|b| b.is_ascii_uppercase()).count();
    let lower = bytes.iter().filter(|b| b.is_ascii_lowercase()).count();
    let mixed = if bytes.len() < 16 {
        digits > 0 && upper > 0 && lower > 0
    } else {
        digits > 0 && upper + lower > 0 || (upper > 0 && lower > 0 && bytes.len() >= 32)
    };
    mixed
        && bytes.len() >= 12
        && not_placeholder(text)
        && !encodes_public_or_prose(bytes)
        && !looks_like_code(text)
        && !super::words::reads_as_words(bytes)
        && super::entropy::shannon(bytes) >= 3.3
}

/// A password after `password=`, `pwd:`, `password is`: any shape a person would pick,
/// but not a placeholder or code, and not a single word of one character class.
pub fn password(text: &str) -> bool {
    (char_classes(text) >= 2 || text.len() >= 12) && not_placeholder(text) && !looks_like_code(text)
}

/// How many of lower case, upper case, digits and other characters `text` holds.
fn char_classes(text: &str) -> usize {
    let bytes = text.as_bytes();
    [
        bytes.iter().any(u8::is_ascii_lowercase),
        bytes.iter().any(u8::is_ascii_uppercase),
        bytes.iter().any(u8::is_ascii_digit),
        bytes.iter().any(|b| !b.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|&&c| c)
    .count()
}

/// A framework's quoted secret key: any symbols (Django's generator uses `(`, `)` and
/// `*`, so code-looking punctuation is no sign of code here), three character classes,
/// no placeholder.
pub fn quoted_secret(text: &str) -> bool {
    char_classes(text) >= 3 && not_placeholder(text) && not_filler(text)
}

/// A password told in prose: as [`password`], and holding a digit or a symbol (prose
/// says "the password is different" far more often than it gives a password of letters).
pub fn chat_password(text: &str) -> bool {
    password(text) && text.bytes().any(|b| b.is_ascii_digit() || b.is_ascii_punctuation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_one_digit_off() {
        assert!(payment_card("4111 1111 1111 1111"));
        assert!(payment_card("5500-0000-0000-0004"));
        assert!(payment_card("378282246310005"));
        assert!(!payment_card("4111 1111 1111 1112"));
        assert!(!payment_card("1111 1111 1111 1117"), "no issuer starts with 1");
    }

    #[test]
    fn iban_mod97() {
        assert!(iban("GB82 WEST 1234 5698 7654 32"));
        assert!(iban("DE89370400440532013000"));
        assert!(!iban("GB82 WEST 1234 5698 7654 33"));
    }

    #[test]
    fn ssn_rules() {
        assert!(us_ssn("123-45-6789"));
        assert!(!us_ssn("000-45-6789"));
        assert!(!us_ssn("666-45-6789"));
        assert!(!us_ssn("923-45-6789"));
        assert!(!us_ssn("123-00-6789"));
    }

    #[test]
    fn public_material_and_prose_in_base64_are_told_from_keys() {
        use base64::Engine;
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(encodes_public_or_prose(encode("-----BEGIN CERTIFICATE-----\nMIIC5zCCAc+gAwIBAgIJ").as_bytes()));
        assert!(encodes_public_or_prose(encode("Thank you for your order, it ships in three days.").as_bytes()));
        assert!(!encodes_public_or_prose(encode("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB").as_bytes()));
        assert!(!encodes_public_or_prose(b"q7bK3xV9mN2pR8sW4yQ7bK3xV9mN2pR8sW4yZ8ab"));
        assert!(!encodes_public_or_prose(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"));
    }

    #[test]
    fn filler_and_default_passwords_are_not_secrets() {
        assert!(!not_filler("sk_test_xxxxxxxxxxxxxxxxxxxxxxxx"));
        assert!(!not_filler("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"));
        assert!(not_filler("sk_live_51Hx9QmKd8sVt2LpRw7ZyBn3Fc6Gj4Ta0"));
        assert!(!url_password("postgres") && !url_password("Password"));
        assert!(url_password("s3cr3t-pass"));
    }

    #[test]
    fn dni_letter() {
        assert!(es_dni("12345678Z"));
        assert!(!es_dni("12345678A"));
    }
}
