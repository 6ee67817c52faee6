//! Lowers argument conditions to what libseccomp can compare: per rule, a
//! conjunction of masked equalities with at most one comparison per argument.
//!
//! `Lo32In`/`Lo32NotIn` become several rules (a disjunction). `Lo32NotIn` is covered
//! by aligned power-of-two blocks of the 32-bit space, like a CIDR aggregation of
//! everything but the allowed values: each block is `(arg & mask) == value` with the
//! mask's upper 32 bits clear, so the kernel-ignored upper half of an `int` argument
//! cannot dodge the rule.

use super::ArgCond;

/// `(args[arg] & mask) == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaskedCmp {
    pub arg: u32,
    pub mask: u64,
    pub value: u64,
}

/// Alternatives for one condition: the condition holds iff one of them does.
fn alternatives(cond: &ArgCond) -> Vec<MaskedCmp> {
    match *cond {
        ArgCond::MaskedEq { arg, mask, value } => vec![MaskedCmp { arg, mask, value }],
        ArgCond::Lo32In { arg, values } => values
            .iter()
            .map(|&v| MaskedCmp {
                arg,
                mask: 0xffff_ffff,
                value: u64::from(v),
            })
            .collect(),
        ArgCond::Lo32NotIn { arg, values } => complement_blocks(values, 32)
            .into_iter()
            .map(|(mask, value)| MaskedCmp { arg, mask, value })
            .collect(),
    }
}

/// The conjunction `conds` as a disjunction of conjunctions of masked equalities
/// (the cartesian product of each condition's alternatives).
pub(crate) fn lower_conditions(conds: &[ArgCond]) -> Vec<Vec<MaskedCmp>> {
    let mut out: Vec<Vec<MaskedCmp>> = vec![Vec::new()];
    for cond in conds {
        let alts = alternatives(cond);
        let mut next = Vec::with_capacity(out.len() * alts.len());
        for prefix in &out {
            for alt in &alts {
                let mut conj = prefix.clone();
                conj.push(*alt);
                next.push(conj);
            }
        }
        out = next;
    }
    out
}

/// Aligned blocks `(mask, value)` covering exactly the values of `bits`-bit space that
/// are not in `allowed`: `x` is outside `allowed` iff `x & mask == value` for one block.
pub(crate) fn complement_blocks(allowed: &[u32], bits: u32) -> Vec<(u64, u64)> {
    let bits = bits.clamp(1, 32);
    let top: u64 = (1u64 << bits) - 1;
    let mut sorted: Vec<u64> = allowed
        .iter()
        .map(|&v| u64::from(v))
        .filter(|&v| v <= top)
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut gap_start: u64 = 0;
    for v in sorted.into_iter().chain(std::iter::once(top + 1)) {
        if v > gap_start {
            cover_range(gap_start, v - 1, top, &mut out);
        }
        gap_start = v + 1;
    }
    out
}

/// Splits `[lo, hi]` into the largest aligned power-of-two blocks.
fn cover_range(mut lo: u64, hi: u64, top: u64, out: &mut Vec<(u64, u64)>) {
    while lo <= hi {
        let mut size: u64 = if lo == 0 {
            top + 1
        } else {
            1u64 << lo.trailing_zeros()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((top & !(size - 1), lo));
        lo += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(blocks: &[(u64, u64)], x: u64) -> usize {
        blocks.iter().filter(|(m, v)| x & m == *v).count()
    }

    #[test]
    fn complement_is_exact_and_disjoint_in_8_bits() {
        let cases: &[&[u32]] = &[&[], &[0], &[255], &[0, 255], &[1, 2, 10], &[0, 8, 17, 200]];
        for allowed in cases {
            let blocks = complement_blocks(allowed, 8);
            for x in 0u64..256 {
                let want = usize::from(!allowed.contains(&(x as u32)));
                assert_eq!(covered(&blocks, x), want, "x={x} allowed={allowed:?}");
            }
        }
    }

    #[test]
    fn complement_of_socket_families_in_32_bits() {
        let blocks = complement_blocks(&[1, 2, 10], 32);
        for x in [
            0u64,
            3,
            9,
            11,
            16,
            17,
            45,
            0xffff_ffff,
            0x8000_0000,
            0x7fff_ffff,
        ] {
            assert_eq!(covered(&blocks, x), 1, "x={x:#x}");
        }
        for x in [1u64, 2, 10] {
            assert_eq!(covered(&blocks, x), 0);
            // The upper half is ignored, as the kernel ignores it for an int.
            assert_eq!(covered(&blocks, x | 0xdead_0000_0000_0000), 0);
        }
        assert!(blocks.iter().all(|(m, _)| m >> 32 == 0));
        assert_eq!(blocks.len(), 34);
        // docs/seccomp.md quotes both counts.
        let personality = complement_blocks(&[0, 8, 0x2_0000, 0x2_0008, 0xffff_ffff], 32);
        assert_eq!(personality.len(), 82);
        assert_eq!(covered(&personality, 0x4_0000), 1);
        assert_eq!(covered(&personality, 0xffff_fffe), 1);
        assert_eq!(covered(&personality, 0x2_0008), 0);
    }

    #[test]
    fn lowering_is_a_product() {
        let conds = [
            ArgCond::Lo32In {
                arg: 0,
                values: &[1, 2],
            },
            ArgCond::MaskedEq {
                arg: 1,
                mask: 0xf,
                value: 3,
            },
        ];
        let low = lower_conditions(&conds);
        assert_eq!(low.len(), 2);
        assert_eq!(
            low[1],
            vec![
                MaskedCmp {
                    arg: 0,
                    mask: 0xffff_ffff,
                    value: 2
                },
                MaskedCmp {
                    arg: 1,
                    mask: 0xf,
                    value: 3
                }
            ]
        );
        assert_eq!(lower_conditions(&[]), vec![Vec::<MaskedCmp>::new()]);
    }
}
