//! Deterministic, lazily generated national data: citizens in households, enterprises whose
//! representatives are citizens, land parcels whose users are citizens or enterprises.
//!
//! Nothing is stored: record `i` is a pure function of the seed and `i`, and each key maps
//! back to its index through an affine permutation, so start-up is instant at any size and a
//! lookup by key costs one generation.

use super::names::*;
use super::random::{Permutation, Rng};
use crate::domain::dataset::{BUSINESS_ENTERPRISE, LAND_PARCEL, POPULATION_CITIZEN};
use crate::domain::date::days_in_month;
use crate::domain::ids::{EnterpriseCode, ParcelId, PersonalId, Sex};
use crate::domain::units::units;
use crate::proto::lienthong::{
    Address, BusinessLine, Citizen, Enterprise, LandParcel, LandUser, Relative, Representative,
};

/// Default data sizes: what `lienthong sim` and the demo serve.
pub const DEFAULT_CITIZENS: u32 = 100_000;
pub const DEFAULT_ENTERPRISES: u32 = 20_000;
pub const DEFAULT_PARCELS: u32 = 50_000;
pub const DEFAULT_SEED: u64 = 20_250_701;

/// Personal-id serials are 6 digits, so one seed holds at most this many citizens.
pub const MAX_CITIZENS: u32 = 1_000_000;
const ENTERPRISE_SEQUENCES: u64 = 9_999_999;
const SHEETS_PER_COMMUNE: u64 = 60;
const PARCELS_PER_SHEET: u64 = 800;
/// Members of one generated household: head, spouse, two children.
const HOUSEHOLD: u32 = 4;

/// A dataset the simulators do not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dataset {0:?}; the simulators serve {datasets}", datasets = DATASETS.join(", "))]
pub struct UnknownDataset(pub String);

/// The three datasets' names as the gateway knows them.
pub const DATASETS: &[&str] = &[POPULATION_CITIZEN, BUSINESS_ENTERPRISE, LAND_PARCEL];

/// One seed's worth of national data.
#[derive(Debug, Clone)]
pub struct SimData {
    seed: u64,
    citizens: u32,
    enterprises: u32,
    parcels: u32,
    citizen_perm: Permutation,
    enterprise_perm: Permutation,
    parcel_perm: Permutation,
}

/// Core facts of one household member, from which the full record is built.
struct Person {
    id: PersonalId,
    surname: &'static str,
    middle: &'static str,
    given: &'static str,
    birth: (i32, u32, u32),
    sex: Sex,
    birth_commune: usize,
    residence: usize,
}

impl Person {
    fn full_name(&self) -> String {
        format!("{} {} {}", self.surname, self.middle, self.given)
    }
    fn relative(&self) -> Relative {
        Relative {
            full_name: self.full_name(),
            personal_id: self.id.to_string(),
            old_id_number: String::new(),
            nationality: "VN".into(),
        }
    }
}

fn iso_date((y, m, d): (i32, u32, u32)) -> String {
    format!("{y:04}-{m:02}-{d:02}")
}

fn address_2025(commune: usize, detail: String) -> Address {
    let u = units();
    let c = &u.communes[commune];
    let p = &u.provinces[c.province];
    Address {
        province_code: p.code.into(),
        province_name: p.name.into(),
        commune_code: c.code.into(),
        commune_name: c.name.into(),
        detail,
        country: "VN".into(),
        ..Address::default()
    }
}

fn address_pre2025(old_commune: usize) -> Address {
    let u = units();
    let c = &u.old_communes[old_commune];
    let p = &u.old_provinces[c.province];
    Address {
        province_code: p.code.into(),
        province_name: p.name.into(),
        district_code: c.district_code.into(),
        district_name: c.district_name.into(),
        commune_code: c.code.into(),
        commune_name: c.name.into(),
        detail: String::new(),
        country: "VN".into(),
    }
}

fn street_detail(rng: &mut Rng, urban: bool) -> String {
    if urban {
        format!("Số {} đường {}", rng.range(1, 350), rng.pick(STREETS))
    } else {
        format!("{} {}", rng.pick(HAMLETS), rng.range(1, 15))
    }
}

const STREAM_HOUSEHOLD: u64 = 1;
const STREAM_PERSON: u64 = 2;
const STREAM_ENTERPRISE: u64 = 3;
const STREAM_PARCEL: u64 = 4;

impl SimData {
    pub fn new(seed: u64, citizens: u32, enterprises: u32, parcels: u32) -> SimData {
        let communes = units().communes.len() as u64;
        SimData {
            seed,
            citizens: citizens.min(MAX_CITIZENS),
            enterprises: enterprises.min(ENTERPRISE_SEQUENCES as u32),
            parcels,
            citizen_perm: Permutation::new(u64::from(MAX_CITIZENS), seed, 11),
            enterprise_perm: Permutation::new(ENTERPRISE_SEQUENCES, seed, 12),
            parcel_perm: Permutation::new(
                communes * SHEETS_PER_COMMUNE * PARCELS_PER_SHEET,
                seed,
                13,
            ),
        }
    }

    pub fn citizens(&self) -> u32 {
        self.citizens
    }
    pub fn enterprises(&self) -> u32 {
        self.enterprises
    }
    pub fn parcels(&self) -> u32 {
        self.parcels
    }

    /// The four members of household `h`, oldest generation first.
    fn household(&self, h: u32) -> [Person; HOUSEHOLD as usize] {
        let u = units();
        let mut rng = Rng::new(self.seed, STREAM_HOUSEHOLD, u64::from(h));
        let residence = rng.below(u.communes.len() as u64) as usize;
        let province_code = u.provinces[u.communes[residence].province].code;
        let home_old = u
            .old_province_by_id_prefix(&format!("0{province_code}"))
            .unwrap_or(0);
        let head_sex = if rng.chance(800) {
            Sex::Male
        } else {
            Sex::Female
        };
        let head_year = rng.range(1950, 1985) as i32;
        let spouse_year = (head_year + rng.range(-5, 6) as i32).clamp(1948, 1990);
        let head_surname = rng.weighted(SURNAMES, |s| s.1).0;
        let spouse_surname = rng.weighted(SURNAMES, |s| s.1).0;
        let (father_surname, mother_year) = if head_sex == Sex::Male {
            (head_surname, spouse_year)
        } else {
            (spouse_surname, head_year)
        };
        let plans: [(i32, Sex, &'static str, bool); 4] = [
            (head_year, head_sex, head_surname, rng.chance(300)),
            (
                spouse_year,
                opposite(head_sex),
                spouse_surname,
                rng.chance(400),
            ),
            (
                (mother_year + rng.range(20, 30) as i32).min(2024),
                if rng.chance(500) {
                    Sex::Male
                } else {
                    Sex::Female
                },
                father_surname,
                false,
            ),
            (
                (mother_year + rng.range(31, 40) as i32).min(2025),
                if rng.chance(500) {
                    Sex::Male
                } else {
                    Sex::Female
                },
                father_surname,
                false,
            ),
        ];
        let mut member = 0;
        plans.map(|(year, sex, surname, born_elsewhere)| {
            let index = h * HOUSEHOLD + member;
            member += 1;
            let mut prng = Rng::new(self.seed, STREAM_PERSON, u64::from(index));
            let birth_old = if born_elsewhere {
                prng.below(u.old_provinces.len() as u64) as usize
            } else {
                home_old
            };
            let communes = u.old_communes_of(birth_old);
            let birth_commune = communes.start + prng.below(communes.len().max(1) as u64) as usize;
            let month = prng.range(1, 12) as u32;
            let day = prng.range(1, i64::from(days_in_month(year, month))) as u32;
            let (middle, given) = if sex == Sex::Male {
                (*prng.pick(MIDDLE_MALE), *prng.pick(GIVEN_MALE))
            } else {
                (*prng.pick(MIDDLE_FEMALE), *prng.pick(GIVEN_FEMALE))
            };
            let serial = self.citizen_perm.apply(u64::from(index)) as u32;
            Person {
                id: PersonalId::from_parts(u.old_provinces[birth_old].id_prefix, year, sex, serial),
                surname,
                middle,
                given,
                birth: (year, month, day),
                sex,
                birth_commune,
                residence,
            }
        })
    }

    /// The citizen at generation index `i`.
    pub fn citizen_at(&self, i: u32) -> Option<Citizen> {
        if i >= self.citizens {
            return None;
        }
        let members = self.household(i / HOUSEHOLD);
        let role = (i % HOUSEHOLD) as usize;
        let me = &members[role];
        let head = &members[0];
        let u = units();
        let mut rng = Rng::new(self.seed, STREAM_PERSON ^ 0xC1, u64::from(i));
        let ethnicity = rng.weighted(ETHNICITIES, |e| e.2);
        let urban = u.communes[me.residence].name.starts_with("Phường");
        let mut hrng = Rng::new(self.seed, STREAM_HOUSEHOLD ^ 0xAD, u64::from(i / HOUSEHOLD));
        let permanent = address_2025(me.residence, street_detail(&mut hrng, urban));
        let (father, mother) = if role >= 2 {
            let (f, m) = if head.sex == Sex::Male {
                (&members[0], &members[1])
            } else {
                (&members[1], &members[0])
            };
            (Some(f.relative()), Some(m.relative()))
        } else {
            let parent = |sex: Sex, rng: &mut Rng| Relative {
                full_name: if sex == Sex::Male {
                    format!(
                        "{} {} {}",
                        me.surname,
                        rng.pick(MIDDLE_MALE),
                        rng.pick(GIVEN_MALE)
                    )
                } else {
                    let surname = rng.weighted(SURNAMES, |s| s.1).0;
                    format!(
                        "{surname} {} {}",
                        rng.pick(MIDDLE_FEMALE),
                        rng.pick(GIVEN_FEMALE)
                    )
                },
                nationality: "VN".into(),
                ..Relative::default()
            };
            (
                Some(parent(Sex::Male, &mut rng)),
                Some(parent(Sex::Female, &mut rng)),
            )
        };
        let adult = me.birth.0 <= 2007;
        let (marital_status, spouse) = match role {
            0 => ("married", Some(members[1].relative())),
            1 => ("married", Some(members[0].relative())),
            _ if adult && rng.chance(300) => ("married", None),
            _ => ("single", None),
        };
        let relation = match (role, me.sex) {
            (0, _) => "chủ hộ",
            (1, Sex::Male) => "chồng",
            (1, Sex::Female) => "vợ",
            _ => "con",
        };
        let minor = me.birth.0 > 2008;
        let legal_representative = if minor { father.clone() } else { None };
        let old_id_number = if me.birth.0 < 2000 {
            format!("{:09}", rng.below(1_000_000_000))
        } else {
            String::new()
        };
        let date_of_death = if role == 0 && me.birth.0 < 1960 && rng.chance(30) {
            iso_date((2024, rng.range(1, 12) as u32, rng.range(1, 28) as u32))
        } else {
            String::new()
        };
        let current = if adult && rng.chance(120) {
            let elsewhere = rng.below(u.communes.len() as u64) as usize;
            Some(address_2025(elsewhere, street_detail(&mut rng, true)))
        } else {
            None
        };
        Some(Citizen {
            personal_id: me.id.to_string(),
            old_id_number,
            full_name: me.full_name(),
            other_name: String::new(),
            date_of_birth: iso_date(me.birth),
            sex: match me.sex {
                Sex::Male => "male".into(),
                Sex::Female => "female".into(),
            },
            birth_registration_place: Some(address_pre2025(me.birth_commune)),
            home_town: Some(address_pre2025(if role >= 2 {
                head.birth_commune
            } else {
                me.birth_commune
            })),
            ethnicity_code: ethnicity.0.into(),
            ethnicity: ethnicity.1.into(),
            religion: rng.weighted(RELIGIONS, |r| r.1).0.into(),
            nationality: "VN".into(),
            blood_group: rng.weighted(BLOOD_GROUPS, |b| b.1).0.into(),
            temporary_residence: current.clone(),
            current_residence: Some(current.unwrap_or_else(|| permanent.clone())),
            permanent_residence: Some(permanent),
            marital_status: marital_status.into(),
            household_head_id: head.id.to_string(),
            relation_to_head: relation.into(),
            father,
            mother,
            spouse,
            legal_representative,
            date_of_death,
        })
    }

    /// The citizen with this personal id, if one was generated.
    pub fn citizen(&self, id: &PersonalId) -> Option<Citizen> {
        let index = self.citizen_perm.invert(u64::from(id.serial()));
        let citizen = self.citizen_at(u32::try_from(index).ok()?)?;
        (citizen.personal_id == id.as_str()).then_some(citizen)
    }

    /// The personal ids of the children of a household head or spouse (empty for anyone
    /// else): the citizens whose record names them as father or mother.
    pub fn children_of(&self, id: &PersonalId) -> Vec<String> {
        let index = self.citizen_perm.invert(u64::from(id.serial()));
        let Ok(index) = u32::try_from(index) else {
            return Vec::new();
        };
        if index % HOUSEHOLD >= 2 {
            return Vec::new();
        }
        let h = index / HOUSEHOLD;
        (2..HOUSEHOLD)
            .filter_map(|m| self.citizen_at(h * HOUSEHOLD + m))
            .filter(|c| {
                [&c.father, &c.mother]
                    .iter()
                    .any(|p| p.as_ref().is_some_and(|p| p.personal_id == id.as_str()))
            })
            .map(|c| c.personal_id)
            .collect()
    }

    /// An adult household member (head or spouse), chosen by `pick`, for references.
    fn adult(&self, pick: u64) -> Option<Person> {
        let households = self.citizens / HOUSEHOLD;
        if households == 0 {
            return None;
        }
        let h = (pick % u64::from(households)) as u32;
        let [head, spouse, ..] = self.household(h);
        Some(if (pick / u64::from(households)).is_multiple_of(2) {
            head
        } else {
            spouse
        })
    }

    fn enterprise_core(&self, j: u32) -> (EnterpriseCode, usize, Rng) {
        let u = units();
        let mut rng = Rng::new(self.seed, STREAM_ENTERPRISE, u64::from(j));
        let sequence = self.enterprise_perm.apply(u64::from(j)) + 1;
        let first = rng.below(u.provinces.len() as u64) as usize;
        let mut digits = [0u8; 9];
        for (k, d) in digits[2..].iter_mut().enumerate() {
            *d = ((sequence / 10u64.pow(6 - k as u32)) % 10) as u8;
        }
        // Try provinces in turn until the prefix is issuable (about 9% are not).
        for step in 0..u.provinces.len() {
            let province = (first + step) % u.provinces.len();
            let code = u.provinces[province].code.as_bytes();
            digits[0] = code[0] - b'0';
            digits[1] = code[1] - b'0';
            if let Some(code) = EnterpriseCode::from_prefix(&digits) {
                return (code, province, rng);
            }
        }
        unreachable!("34 province prefixes cannot all give a weighted sum divisible by 11")
    }

    /// The enterprise at generation index `j`, with its number of branches.
    pub fn enterprise_at(&self, j: u32) -> Option<(Enterprise, u16)> {
        if j >= self.enterprises {
            return None;
        }
        let u = units();
        let (code, province, mut rng) = self.enterprise_core(j);
        let communes: Vec<usize> = (0..u.communes.len())
            .filter(|&c| u.communes[c].province == province)
            .collect();
        let commune = *rng.pick(&communes);
        let kind = rng.weighted(ENTERPRISE_TYPES, |t| t.3);
        let lines: Vec<&(&str, &str, &str)> = (0..rng.range(1, 4))
            .map(|_| rng.pick(BUSINESS_LINES))
            .collect();
        let trade = rng.pick(TRADE_NAMES);
        let name = format!("{} {} {}", kind.1, lines[0].2, trade);
        let folded = ascii_fold(&format!("{} {}", trade, lines[0].2)).to_uppercase();
        let mut business_lines: Vec<BusinessLine> = Vec::new();
        for (k, line) in lines.iter().enumerate() {
            if business_lines.iter().all(|b| b.vsic_code != line.0) {
                business_lines.push(BusinessLine {
                    vsic_code: line.0.into(),
                    name: line.1.into(),
                    main: k == 0,
                });
            }
        }
        let representatives = (0..rng.range(1, 2))
            .filter_map(|_| self.adult(rng.next()))
            .enumerate()
            .map(|(k, p)| Representative {
                full_name: p.full_name(),
                title: REPRESENTATIVE_TITLES[k.min(REPRESENTATIVE_TITLES.len() - 1)].into(),
                personal_id: p.id.to_string(),
            })
            .collect();
        let branches = if rng.chance(200) {
            rng.range(1, 3) as u16
        } else {
            0
        };
        let founded = (
            rng.range(1995, 2025) as i32,
            rng.range(1, 12) as u32,
            rng.range(1, 28) as u32,
        );
        Some((
            Enterprise {
                enterprise_code: code.to_string(),
                name,
                foreign_name: format!("{folded} {}", kind.2),
                short_name: format!("{} {}", ascii_fold(trade).to_uppercase(), kind.2),
                enterprise_type: kind.0.into(),
                founding_date: iso_date(founded),
                charter_capital: rng.range(1, 500) * 100_000_000,
                head_office: Some(address_2025(commune, street_detail(&mut rng, true))),
                legal_representatives: representatives,
                business_lines,
                status: rng.weighted(ENTERPRISE_STATUSES, |s| s.1).0.into(),
                parent_code: String::new(),
            },
            branches,
        ))
    }

    /// The enterprise or branch with this code, if one was generated.
    pub fn enterprise(&self, code: &EnterpriseCode) -> Option<Enterprise> {
        let sequence: u64 = code.main_code()[2..9].parse().ok()?;
        let j = self.enterprise_perm.invert(sequence.checked_sub(1)?);
        let (mut record, branches) = self.enterprise_at(u32::try_from(j).ok()?)?;
        if record.enterprise_code != code.main_code() {
            return None;
        }
        if let Some(branch) = code.branch() {
            if branch > branches {
                return None;
            }
            let mut rng = Rng::new(
                self.seed,
                STREAM_ENTERPRISE ^ 0xB7,
                u64::from(branch) << 32 | j,
            );
            let commune = rng.below(units().communes.len() as u64) as usize;
            record.parent_code = record.enterprise_code.clone();
            record.enterprise_code = code.to_string();
            record.name = format!("Chi nhánh {} - {}", branch, record.name);
            record.enterprise_type = "Chi nhánh".into();
            record.head_office = Some(address_2025(commune, street_detail(&mut rng, true)));
        }
        Some(record)
    }

    /// The parcel at generation index `k`.
    pub fn parcel_at(&self, k: u32) -> Option<LandParcel> {
        if k >= self.parcels {
            return None;
        }
        let u = units();
        let slot = self.parcel_perm.apply(u64::from(k));
        let commune = (slot / (SHEETS_PER_COMMUNE * PARCELS_PER_SHEET)) as usize;
        let sheet = (slot / PARCELS_PER_SHEET % SHEETS_PER_COMMUNE + 1) as u32;
        let parcel = (slot % PARCELS_PER_SHEET + 1) as u32;
        let mut rng = Rng::new(self.seed, STREAM_PARCEL, u64::from(k));
        let (purposes, lo, hi, long_term, _) = *rng.weighted(LAND_USES, |l| l.4);
        let area = rng.range(i64::from(lo) * 10, i64::from(hi) * 10) as f64 / 10.0;
        let commercial = purposes.iter().any(|p| matches!(*p, "TMD" | "SKC"));
        let land_users = if commercial && self.enterprises > 0 {
            let (e, _) = self.enterprise_at(rng.below(u64::from(self.enterprises)) as u32)?;
            vec![LandUser {
                full_name: e.name,
                id_kind: "enterprise_code".into(),
                id: e.enterprise_code,
            }]
        } else {
            let pick = rng.next();
            let first = self.adult(pick);
            let couple = rng.chance(500);
            let mut users: Vec<LandUser> = first
                .into_iter()
                .map(|p| LandUser {
                    full_name: p.full_name(),
                    id_kind: "personal_id".into(),
                    id: p.id.to_string(),
                })
                .collect();
            if couple
                && let Some(p) = self.adult(pick ^ 1)
                && users.iter().all(|u| u.id != p.id.as_str())
            {
                users.push(LandUser {
                    full_name: p.full_name(),
                    id_kind: "personal_id".into(),
                    id: p.id.to_string(),
                });
            }
            users
        };
        let letters = b"ABCDEFGHKLMNPRSTUV";
        let serial = format!(
            "{}{} {:06}",
            char::from(letters[rng.below(letters.len() as u64) as usize]),
            char::from(letters[rng.below(letters.len() as u64) as usize]),
            rng.below(1_000_000)
        );
        let urban = u.communes[commune].name.starts_with("Phường");
        Some(LandParcel {
            parcel_id: format!("{}-{sheet}-{parcel}", u.communes[commune].code),
            commune_code: u.communes[commune].code.into(),
            map_sheet: sheet,
            parcel_number: parcel,
            area_m2: area,
            land_use_purposes: purposes.iter().map(|p| (*p).into()).collect(),
            term_of_use: if long_term {
                "long-term".into()
            } else {
                iso_date((rng.range(2030, 2074) as i32, rng.range(1, 12) as u32, 1))
            },
            form_of_use: if land_users.len() > 1 {
                "shared"
            } else {
                "private"
            }
            .into(),
            land_users,
            certificate_serial: serial,
            mortgaged: rng.chance(150),
            disputed: rng.chance(20),
            address: Some(address_2025(commune, street_detail(&mut rng, urban))),
        })
    }

    /// The parcel with this key, if one was generated.
    pub fn parcel(&self, id: &ParcelId) -> Option<LandParcel> {
        let u = units();
        let commune = u.communes.iter().position(|c| c.code == id.commune)? as u64;
        if u64::from(id.sheet) > SHEETS_PER_COMMUNE || u64::from(id.parcel) > PARCELS_PER_SHEET {
            return None;
        }
        let slot = (commune * SHEETS_PER_COMMUNE + u64::from(id.sheet) - 1) * PARCELS_PER_SHEET
            + u64::from(id.parcel)
            - 1;
        self.parcel_at(u32::try_from(self.parcel_perm.invert(slot)).ok()?)
    }

    /// `count` keys that exist in `dataset`, spread over the generated range.
    pub fn samples(&self, dataset: &str, count: u32) -> Result<Vec<String>, UnknownDataset> {
        let size = match dataset {
            POPULATION_CITIZEN | super::civil::DATASET | super::vehicles::DATASET => self.citizens,
            // Only citizens of working age are insured: look among more to find `count`.
            super::insurance::DATASET => {
                return Ok((0..self.citizens)
                    .step_by((self.citizens / count.max(1) / 4).max(1) as usize)
                    .filter_map(|i| super::insurance::code_of(self, i))
                    .filter(|c| super::insurance::insured(self, c).is_some())
                    .take(count as usize)
                    .collect());
            }
            BUSINESS_ENTERPRISE => self.enterprises,
            LAND_PARCEL => self.parcels,
            // One marriage per generated household (its head and spouse).
            super::civil::MARRIAGE_DATASET => self.citizens / HOUSEHOLD,
            other => return Err(UnknownDataset(other.to_owned())),
        };
        let count = count.min(size);
        let stride = (size / count.max(1)).max(1);
        Ok((0..count)
            .filter_map(|n| {
                let i = n * stride;
                match dataset {
                    POPULATION_CITIZEN => self.citizen_at(i).map(|c| c.personal_id),
                    BUSINESS_ENTERPRISE => self.enterprise_at(i).map(|e| e.0.enterprise_code),
                    super::civil::DATASET => super::civil::key_of(self, i),
                    super::civil::MARRIAGE_DATASET => super::civil::marriage_key_of(self, i),
                    // One citizen in three has a vehicle: the nearest index that does.
                    super::vehicles::DATASET => super::vehicles::plate_of(self, i - i % 3),
                    _ => self.parcel_at(i).map(|p| p.parcel_id),
                }
            })
            .collect())
    }
}

fn opposite(sex: Sex) -> Sex {
    match sex {
        Sex::Male => Sex::Female,
        Sex::Female => Sex::Male,
    }
}

#[cfg(test)]
mod tests;
