//! Pricing reported token usage for the `cost_usd` budget.
//!
//! The built-in table is an EXAMPLE, written down once so the feature works out of
//! the box; prices change and differ by contract. Operators should check it against
//! their provider and override it in the policy file's `prices:` section (which
//! replaces entries of the same name and adds new ones).

use std::collections::BTreeMap;

use crate::file::Price;

/// Example prices in USD per million tokens (input, output). Check them; override
/// them under `prices:` in the policy file.
pub const EXAMPLE_PRICES: &[(&str, f64, f64)] = &[
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("gpt-4o", 2.5, 10.0),
    ("gpt-4o-mini", 0.15, 0.6),
];

/// The built-in example table with `overrides` applied.
pub fn price_table(overrides: &BTreeMap<String, Price>) -> BTreeMap<String, Price> {
    let mut table: BTreeMap<String, Price> = EXAMPLE_PRICES
        .iter()
        .map(|(m, i, o)| {
            (
                (*m).to_owned(),
                Price {
                    input_per_mtok: *i,
                    output_per_mtok: *o,
                },
            )
        })
        .collect();
    table.extend(overrides.iter().map(|(k, v)| (k.clone(), *v)));
    table
}

/// The price entry for `model`: the exact name, else the longest entry that is a
/// prefix of it at a `-` boundary (`claude-sonnet-4-20250514` → `claude-sonnet-4`).
pub fn price_for<'t>(table: &'t BTreeMap<String, Price>, model: &str) -> Option<(&'t str, Price)> {
    if let Some((k, p)) = table.get_key_value(model) {
        return Some((k, *p));
    }
    table
        .iter()
        .filter(|(k, _)| {
            model
                .strip_prefix(k.as_str())
                .is_some_and(|rest| rest.starts_with('-'))
        })
        .max_by_key(|(k, _)| k.len())
        .map(|(k, p)| (k.as_str(), *p))
}

/// Cost in USD of `input` + `output` tokens at `price`.
pub fn cost_usd(price: Price, input: u64, output: u64) -> f64 {
    (input as f64 * price.input_per_mtok + output as f64 * price.output_per_mtok) / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_override() {
        let mut o = BTreeMap::new();
        o.insert(
            "gpt-4o".to_owned(),
            Price {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
            },
        );
        let t = price_table(&o);
        assert_eq!(price_for(&t, "gpt-4o").unwrap().1.input_per_mtok, 1.0);
        // Longest prefix wins: gpt-4o-mini, not gpt-4o.
        assert_eq!(price_for(&t, "gpt-4o-mini-2024").unwrap().0, "gpt-4o-mini");
        assert_eq!(
            price_for(&t, "claude-sonnet-4-20250514").unwrap().0,
            "claude-sonnet-4"
        );
        assert!(price_for(&t, "claude-sonnet-45").is_none());
        assert!(price_for(&t, "unknown").is_none());
        let c = cost_usd(t["claude-sonnet-4"], 1_000_000, 100_000);
        assert!((c - 4.5).abs() < 1e-9);
    }
}
