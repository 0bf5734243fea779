//! Word lists for generated Vietnamese names, enterprises and addresses.

/// Surnames with rough population weights (per mille).
pub const SURNAMES: &[(&str, u32)] = &[
    ("Nguyễn", 380),
    ("Trần", 110),
    ("Lê", 95),
    ("Phạm", 70),
    ("Hoàng", 50),
    ("Huỳnh", 30),
    ("Phan", 45),
    ("Vũ", 40),
    ("Võ", 30),
    ("Đặng", 20),
    ("Bùi", 20),
    ("Đỗ", 20),
    ("Hồ", 15),
    ("Ngô", 15),
    ("Dương", 10),
    ("Lý", 5),
    ("Đinh", 10),
    ("Trương", 10),
    ("Lương", 5),
    ("Mai", 5),
];

pub const MIDDLE_MALE: &[&str] = &[
    "Văn", "Hữu", "Đức", "Minh", "Quốc", "Thành", "Công", "Xuân", "Đình", "Quang", "Anh", "Gia",
];
pub const MIDDLE_FEMALE: &[&str] = &[
    "Thị", "Ngọc", "Thu", "Thanh", "Kim", "Bích", "Mai", "Phương", "Thùy", "Hồng", "Khánh", "Minh",
];
pub const GIVEN_MALE: &[&str] = &[
    "Anh", "Bảo", "Cường", "Dũng", "Đạt", "Hải", "Hiếu", "Hoàng", "Hùng", "Huy", "Khang", "Khoa",
    "Long", "Minh", "Nam", "Nghĩa", "Phong", "Phúc", "Quân", "Sơn", "Tài", "Thắng", "Thịnh",
    "Toàn", "Trung", "Tuấn", "Việt", "Vinh", "Tùng", "Lâm",
];
pub const GIVEN_FEMALE: &[&str] = &[
    "An", "Anh", "Chi", "Dung", "Giang", "Hà", "Hạnh", "Hằng", "Hoa", "Huyền", "Hương", "Lan",
    "Linh", "Loan", "Mai", "My", "Nga", "Ngân", "Nhung", "Oanh", "Phương", "Quyên", "Thảo",
    "Trang", "Trinh", "Tuyết", "Vân", "Yến", "Thư", "Vy",
];

/// Ethnicity code and name (the population database codes Kinh as "01").
pub const ETHNICITIES: &[(&str, &str, u32)] = &[
    ("01", "Kinh", 853),
    ("02", "Tày", 20),
    ("03", "Thái", 19),
    ("04", "Mường", 15),
    ("05", "Khmer", 14),
    ("06", "Hoa", 8),
    ("07", "Nùng", 11),
    ("08", "Mông", 14),
    ("09", "Dao", 9),
    ("10", "Gia Rai", 5),
];

pub const RELIGIONS: &[(&str, u32)] = &[
    ("Không", 800),
    ("Phật giáo", 90),
    ("Công giáo", 70),
    ("Tin lành", 10),
    ("Cao Đài", 15),
    ("Phật giáo Hòa Hảo", 15),
];

pub const BLOOD_GROUPS: &[(&str, u32)] = &[("O", 42), ("A", 21), ("B", 31), ("AB", 6)];

pub const STREETS: &[&str] = &[
    "Lê Lợi",
    "Trần Hưng Đạo",
    "Nguyễn Trãi",
    "Hai Bà Trưng",
    "Lý Thường Kiệt",
    "Quang Trung",
    "Hùng Vương",
    "Phan Đình Phùng",
    "Nguyễn Huệ",
    "Điện Biên Phủ",
    "Võ Thị Sáu",
    "Lê Duẩn",
    "Nguyễn Văn Cừ",
    "Cách Mạng Tháng Tám",
    "Phạm Văn Đồng",
    "Trường Chinh",
];

pub const HAMLETS: &[&str] = &["Thôn", "Ấp", "Bản", "Tổ dân phố", "Khu phố", "Xóm"];

/// Distinctive parts of enterprise names.
pub const TRADE_NAMES: &[&str] = &[
    "Hoàng Phát",
    "Minh Anh",
    "Thành Công",
    "Phú Thịnh",
    "An Khang",
    "Việt Tiến",
    "Đại Dương",
    "Sao Mai",
    "Hưng Thịnh",
    "Trường An",
    "Bình Minh",
    "Tân Tiến",
    "Hòa Bình",
    "Phương Nam",
    "Đông Á",
    "Kim Long",
    "Thiên Phú",
    "Ánh Dương",
    "Vạn Xuân",
    "Hồng Hà",
    "Mekong",
    "Sông Hàn",
];

/// A line of business: VSIC 2018 code, Vietnamese name, and the word used in trade names.
pub const BUSINESS_LINES: &[(&str, &str, &str)] = &[
    ("4101", "Xây dựng nhà để ở", "Xây dựng"),
    (
        "4663",
        "Bán buôn vật liệu, thiết bị lắp đặt khác trong xây dựng",
        "Vật liệu",
    ),
    ("4649", "Bán buôn đồ dùng khác cho gia đình", "Thương mại"),
    (
        "4711",
        "Bán lẻ lương thực, thực phẩm trong cửa hàng kinh doanh tổng hợp",
        "Thương mại",
    ),
    (
        "5610",
        "Nhà hàng và các dịch vụ ăn uống phục vụ lưu động",
        "Ẩm thực",
    ),
    ("6201", "Lập trình máy vi tính", "Công nghệ"),
    (
        "6202",
        "Tư vấn máy vi tính và quản trị hệ thống máy vi tính",
        "Công nghệ",
    ),
    ("4933", "Vận tải hàng hóa bằng đường bộ", "Vận tải"),
    (
        "1410",
        "May trang phục (trừ trang phục từ da lông thú)",
        "May mặc",
    ),
    (
        "0118",
        "Trồng rau, đậu các loại và trồng hoa",
        "Nông nghiệp",
    ),
    (
        "1079",
        "Sản xuất thực phẩm khác chưa được phân vào đâu",
        "Thực phẩm",
    ),
    ("7020", "Hoạt động tư vấn quản lý", "Tư vấn"),
    ("5510", "Dịch vụ lưu trú ngắn ngày", "Du lịch"),
    ("8559", "Giáo dục khác chưa được phân vào đâu", "Giáo dục"),
];

/// Enterprise type, its name prefix, its short-name suffix in English.
pub const ENTERPRISE_TYPES: &[(&str, &str, &str, u32)] = &[
    (
        "Công ty trách nhiệm hữu hạn một thành viên",
        "Công ty TNHH",
        "CO., LTD",
        40,
    ),
    (
        "Công ty trách nhiệm hữu hạn hai thành viên trở lên",
        "Công ty TNHH",
        "CO., LTD",
        25,
    ),
    ("Công ty cổ phần", "Công ty Cổ phần", "JSC", 25),
    ("Doanh nghiệp tư nhân", "Doanh nghiệp tư nhân", "PE", 8),
    ("Công ty hợp danh", "Công ty Hợp danh", "PARTNERSHIP", 2),
];

/// Enterprise status (Decree 168/2025) with weights.
pub const ENTERPRISE_STATUSES: &[(&str, u32)] = &[
    ("operating", 860),
    ("suspended", 50),
    ("not_at_registered_address", 20),
    ("revoked_tax_enforcement", 10),
    ("reorganizing", 5),
    ("bankruptcy", 5),
    ("ceased", 50),
];

pub const REPRESENTATIVE_TITLES: &[&str] = &[
    "Giám đốc",
    "Tổng giám đốc",
    "Chủ tịch hội đồng quản trị",
    "Chủ tịch công ty",
];

/// Land-use purpose sets: codes, typical area range in m², long-term use.
pub const LAND_USES: &[(&[&str], u32, u32, bool, u32)] = &[
    (&["ONT"], 80, 600, true, 30),
    (&["ODT"], 35, 250, true, 25),
    (&["ONT", "CLN"], 200, 2_000, true, 10),
    (&["LUC"], 300, 5_000, false, 15),
    (&["CLN"], 500, 8_000, false, 8),
    (&["NTS"], 1_000, 10_000, false, 4),
    (&["RSX"], 5_000, 50_000, false, 3),
    (&["TMD"], 200, 3_000, false, 3),
    (&["SKC"], 1_000, 20_000, false, 2),
];

/// Replaces Vietnamese letters with their ASCII base letters ("Đặng" -> "Dang").
pub fn ascii_fold(s: &str) -> String {
    const GROUPS: &[(&str, char)] = &[
        ("àáảãạăằắẳẵặâầấẩẫậ", 'a'),
        ("ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬ", 'A'),
        ("èéẻẽẹêềếểễệ", 'e'),
        ("ÈÉẺẼẸÊỀẾỂỄỆ", 'E'),
        ("ìíỉĩị", 'i'),
        ("ÌÍỈĨỊ", 'I'),
        ("òóỏõọôồốổỗộơờớởỡợ", 'o'),
        ("ÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢ", 'O'),
        ("ùúủũụưừứửữự", 'u'),
        ("ÙÚỦŨỤƯỪỨỬỮỰ", 'U'),
        ("ỳýỷỹỵ", 'y'),
        ("ỲÝỶỸỴ", 'Y'),
        ("đ", 'd'),
        ("Đ", 'D'),
    ];
    s.chars()
        .map(|c| {
            GROUPS
                .iter()
                .find(|(set, _)| set.contains(c))
                .map_or(c, |&(_, base)| base)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn folds_diacritics() {
        assert_eq!(
            super::ascii_fold("Đặng Thị Hồng Nhung"),
            "Dang Thi Hong Nhung"
        );
    }
}
