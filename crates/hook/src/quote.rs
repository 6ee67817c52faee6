//! The one shell-quoting function of the hook (DESIGN.md §9.1): any string becomes
//! one `/bin/sh` word that expands to exactly that string.

/// `s` as a single-quoted POSIX shell word. Inside single quotes nothing is special
/// but the quote itself, which is closed, escaped and reopened: `'\''`. Holds for
/// every string: `$()`, backticks, newlines, unicode, NUL-free bytes of any kind.
pub fn sh_single_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    /// What `/bin/sh` makes of `printf %s <quoted>`: the word after expansion.
    fn through_sh(s: &str) -> String {
        let script = format!("printf %s {}", sh_single_quote(s));
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn hostile_strings_survive_exactly() {
        for s in [
            "",
            "'",
            "''",
            "a'b\"c",
            "$(touch /tmp/pwned)",
            "`id`",
            "x\ny\n",
            "\\'\\",
            "; rm -rf / #",
            "ünïcødé ✓ — 日本",
            "${HOME:-x} $((1+1)) !! *",
        ] {
            assert_eq!(through_sh(s), s);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_string_is_one_word_that_expands_to_itself(s in "[^\u{0}]{0,64}") {
            prop_assert_eq!(through_sh(&s), s);
        }

        #[test]
        fn shell_metacharacters_in_bulk(s in "[ '\"$`\\\\;&|<>(){}\\n\\t*?!#~=%a-z]{0,48}") {
            prop_assert_eq!(through_sh(&s), s);
        }
    }
}
