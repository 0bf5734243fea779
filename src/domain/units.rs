//! Official administrative-unit code lists (2025 and before), embedded from the GSO CSVs.

use std::collections::HashMap;
use std::sync::LazyLock;

const COMMUNES_2025: &str = include_str!("data/communes-2025.csv");
const PROVINCES_PRE2025: &str = include_str!("data/provinces-pre2025.csv");
const DISTRICTS_PRE2025: &str = include_str!("data/districts-pre2025.csv");

/// A province under the 2025 structure (34 provinces).
#[derive(Debug, Clone)]
pub struct Province {
    pub code: &'static str,
    pub name: &'static str,
}

/// A commune (xã, phường, đặc khu) under the 2025 two-tier structure.
#[derive(Debug, Clone)]
pub struct Commune {
    pub code: &'static str,
    pub name: &'static str,
    pub province: usize,
}

/// A province before the 2025 merger (63 provinces), with its personal-id prefix.
#[derive(Debug, Clone)]
pub struct OldProvince {
    pub code: &'static str,
    pub name: &'static str,
    pub id_prefix: &'static str,
}

/// A commune under the pre-2025 three-tier structure, with its district.
#[derive(Debug, Clone)]
pub struct OldCommune {
    pub province: usize,
    pub district_code: &'static str,
    pub district_name: &'static str,
    pub code: &'static str,
    pub name: &'static str,
}

/// All code lists, parsed once.
#[derive(Debug)]
pub struct Units {
    pub provinces: Vec<Province>,
    pub communes: Vec<Commune>,
    pub old_provinces: Vec<OldProvince>,
    pub old_communes: Vec<OldCommune>,
    commune_by_code: HashMap<&'static str, usize>,
    old_province_by_prefix: HashMap<&'static str, usize>,
    /// For each old province, the range of its communes in `old_communes`.
    old_communes_by_province: Vec<(usize, usize)>,
}

static UNITS: LazyLock<Units> = LazyLock::new(Units::parse);

/// The embedded code lists.
pub fn units() -> &'static Units {
    &UNITS
}

fn rows(csv: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
    csv.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').collect())
}

impl Units {
    fn parse() -> Units {
        let mut provinces: Vec<Province> = Vec::new();
        let mut communes = Vec::new();
        for r in rows(COMMUNES_2025) {
            if provinces.last().map(|p| p.code) != Some(r[0]) {
                provinces.push(Province {
                    code: r[0],
                    name: r[1],
                });
            }
            communes.push(Commune {
                code: r[3],
                name: r[4],
                province: provinces.len() - 1,
            });
        }
        let old_provinces: Vec<OldProvince> = rows(PROVINCES_PRE2025)
            .map(|r| OldProvince {
                code: r[0],
                name: r[1],
                id_prefix: r[2],
            })
            .collect();
        let old_index: HashMap<&str, usize> = old_provinces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.code, i))
            .collect();
        let mut old_communes: Vec<OldCommune> = rows(DISTRICTS_PRE2025)
            .filter_map(|r| {
                Some(OldCommune {
                    province: *old_index.get(r[0])?,
                    district_code: r[1],
                    district_name: r[2],
                    code: r[3],
                    name: r[4],
                })
            })
            .collect();
        old_communes.sort_by_key(|c| c.province);
        let mut old_communes_by_province = vec![(0, 0); old_provinces.len()];
        for (i, c) in old_communes.iter().enumerate() {
            let range = &mut old_communes_by_province[c.province];
            if range.1 == 0 {
                range.0 = i;
            }
            range.1 = i + 1;
        }
        Units {
            commune_by_code: communes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.code, i))
                .collect(),
            old_province_by_prefix: old_provinces
                .iter()
                .enumerate()
                .map(|(i, p)| (p.id_prefix, i))
                .collect(),
            provinces,
            communes,
            old_provinces,
            old_communes,
            old_communes_by_province,
        }
    }

    /// The 2025 commune with this 5-digit code.
    pub fn commune(&self, code: &str) -> Option<&Commune> {
        self.commune_by_code.get(code).map(|&i| &self.communes[i])
    }

    /// The pre-2025 province whose personal-id prefix is `prefix` ("001" Hà Nội).
    pub fn old_province_by_id_prefix(&self, prefix: &str) -> Option<usize> {
        self.old_province_by_prefix.get(prefix).copied()
    }

    /// Indices into `old_communes` of an old province's communes.
    pub fn old_communes_of(&self, province: usize) -> std::ops::Range<usize> {
        let (start, end) = self.old_communes_by_province[province];
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lists_have_the_published_sizes() {
        let u = units();
        assert_eq!(u.provinces.len(), 34);
        assert_eq!(u.communes.len(), 3321);
        assert_eq!(u.old_provinces.len(), 63);
        assert!(u.old_communes.len() > 10_000);
        assert_eq!(u.commune("00004").map(|c| c.name), Some("Phường Ba Đình"));
        let hanoi = u.old_province_by_id_prefix("001").expect("ha noi");
        assert_eq!(u.old_provinces[hanoi].name, "Thành phố Hà Nội");
        assert!(
            u.old_communes_of(hanoi)
                .all(|c| u.old_communes[c].province == hanoi)
        );
        assert!(!u.old_communes_of(hanoi).is_empty());
    }
}
