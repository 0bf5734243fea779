//! Tests of the simulators' generated data: valid identifiers, determinism, samples.

use super::*;

fn data() -> SimData {
    SimData::new(
        DEFAULT_SEED,
        DEFAULT_CITIZENS,
        DEFAULT_ENTERPRISES,
        DEFAULT_PARCELS,
    )
}

#[test]
fn permutation_round_trips() {
    for m in [1_000_000u64, 9_999_999, 159_408_000] {
        let p = Permutation::new(m, 7, 1);
        for x in [0, 1, 2, m / 2, m - 1] {
            assert_eq!(p.invert(p.apply(x)), x);
            assert!(p.apply(x) < m);
        }
    }
}

#[test]
fn citizens_are_valid_deterministic_and_found_by_key() {
    let d = data();
    for i in (0..DEFAULT_CITIZENS).step_by(997) {
        let c = d.citizen_at(i).expect("generated");
        let id = PersonalId::parse(&c.personal_id, 2026).expect("valid personal id");
        assert_eq!(id.birth_year().to_string(), c.date_of_birth[..4]);
        assert_eq!(matches!(id.sex(), Sex::Female), c.sex == "female");
        let place = c.birth_registration_place.as_ref().expect("birth place");
        assert_eq!(format!("0{}", place.province_code), id.province_prefix());
        assert_eq!(d.citizen(&id), Some(c.clone()), "lookup by key");
        assert_eq!(data().citizen_at(i), Some(c), "deterministic");
    }
    assert!(d.citizen_at(DEFAULT_CITIZENS).is_none());
}

#[test]
fn households_reference_each_other() {
    let d = data();
    let head = d.citizen_at(40).expect("head");
    let spouse = d.citizen_at(41).expect("spouse");
    let child = d.citizen_at(42).expect("child");
    assert_eq!(head.relation_to_head, "chủ hộ");
    assert_eq!(child.household_head_id, head.personal_id);
    assert_eq!(
        spouse.spouse.as_ref().map(|s| s.personal_id.as_str()),
        Some(head.personal_id.as_str())
    );
    let parents = [
        child.father.expect("father").personal_id,
        child.mother.expect("mother").personal_id,
    ];
    assert!(parents.contains(&head.personal_id) && parents.contains(&spouse.personal_id));
}

#[test]
fn enterprises_have_check_digits_and_citizen_representatives() {
    let d = data();
    for j in (0..DEFAULT_ENTERPRISES).step_by(211) {
        let (e, branches) = d.enterprise_at(j).expect("generated");
        let code = EnterpriseCode::parse(&e.enterprise_code).expect("valid code");
        assert_eq!(d.enterprise(&code), Some(e.clone()));
        for r in &e.legal_representatives {
            let id = PersonalId::parse(&r.personal_id, 2026).expect("rep id");
            assert_eq!(
                d.citizen(&id).map(|c| c.full_name),
                Some(r.full_name.clone())
            );
        }
        if branches > 0 {
            let branch = d.enterprise(&code.with_branch(1)).expect("branch");
            assert_eq!(branch.parent_code, e.enterprise_code);
        }
        assert!(d.enterprise(&code.with_branch(branches + 1)).is_none());
    }
}

#[test]
fn parcels_are_found_by_key_and_samples_exist() {
    let d = data();
    for k in (0..DEFAULT_PARCELS).step_by(499) {
        let p = d.parcel_at(k).expect("generated");
        let key = ParcelId::parse(&p.parcel_id).expect("valid key");
        assert_eq!(d.parcel(&key), Some(p));
    }
    for dataset in DATASETS {
        let keys = d.samples(dataset, 25).expect("known dataset");
        assert_eq!(keys.len(), 25);
    }
    assert!(d.samples("land.nothing", 1).is_err());
}
