//! A generated HR file: realistic columns and names, some non-ASCII, some fields that need
//! quoting (commas, quotes, line breaks). Deterministic for a seed.

use std::io::Write;

const FIRST: &[&str] = &[
    "Alice",
    "Bruno",
    "Chloé",
    "David",
    "Émilie",
    "François",
    "Gabriel",
    "Hélène",
    "Inès",
    "Jakub",
    "Karin",
    "Łukasz",
    "Maëlle",
    "Nikolaj",
    "Océane",
    "Pål",
    "Quentin",
    "Renée",
    "Søren",
    "Thomas",
    "Ursula",
    "Václav",
    "Wiktoria",
    "Xavier",
    "Yasmine",
    "Zoë",
    "José",
    "Björn",
    "Aurélien",
    "Mónica",
];
const LAST: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Müller",
    "Schmidt",
    "García",
    "Núñez",
    "Kowalski",
    "Nowak",
    "Andersen",
    "Østergaard",
    "Lefèvre",
    "O'Brien",
    "Rossi",
    "Ångström",
    "Johansson",
    "Lambert",
    "Fontaine",
    "Šimek",
    "Dvořák",
    "Smith",
    "Weiß",
    "Fernández",
    "Leroy",
    "Moreau",
    "Girard",
];
const DEPARTMENTS: &[&str] = &[
    "Finance",
    "Human Resources",
    "Engineering",
    "Sales",
    "Legal",
    "Operations",
    "Marketing",
    "IT",
];
const TITLES: &[&str] = &[
    "Analyst",
    "Engineer",
    "Senior Engineer",
    "Director, Sales",
    "Manager",
    "Accountant",
    "Engineer (\"Platform\")",
    "Assistant",
    "Head of Operations",
    "Consultant, Risk & Compliance",
];
const LOCATIONS: &[&str] = &[
    "Paris",
    "Lyon",
    "Zürich",
    "Kraków",
    "São Paulo",
    "Montréal",
    "Oslo",
    "Berlin",
];

/// The columns of the generated file.
pub const COLUMNS: &[&str] = &[
    "employee_id",
    "first_name",
    "last_name",
    "email",
    "department",
    "title",
    "manager_id",
    "location",
    "hire_date",
    "status",
    "notes",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: good enough for fake people, and the same everywhere.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

fn ascii(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'à' | 'á' | 'â' | 'ä' | 'å' | 'Å' | 'Á' => Some('a'),
            'é' | 'è' | 'ê' | 'ë' | 'É' => Some('e'),
            'í' | 'ï' => Some('i'),
            'ó' | 'ö' | 'ø' | 'Ø' | 'ô' => Some('o'),
            'ú' | 'ü' => Some('u'),
            'ñ' | 'ń' => Some('n'),
            'ł' | 'Ł' => Some('l'),
            'š' | 'Š' => Some('s'),
            'ř' => Some('r'),
            'ß' => Some('s'),
            'ç' => Some('c'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Writes `rows` people as CSV (with a header row).
pub fn write_hr(out: impl Write, rows: usize, seed: u64) -> csv::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(COLUMNS)?;
    let mut rng = Rng(seed.max(1));
    for i in 0..rows {
        let first = rng.pick(FIRST);
        let last = rng.pick(LAST);
        let id = format!("E{:07}", i + 1);
        let email = format!(
            "{}.{}{}@example.org",
            ascii(first),
            ascii(last),
            if i % 7 == 0 {
                i.to_string()
            } else {
                String::new()
            }
        );
        let manager = if i < 10 {
            String::new()
        } else {
            format!("E{:07}", 1 + rng.next() % (i as u64 / 10 + 1))
        };
        let hire = format!(
            "{}-{:02}-{:02}",
            2005 + rng.next() % 21,
            1 + rng.next() % 12,
            1 + rng.next() % 28
        );
        let status = if rng.next().is_multiple_of(50) {
            "leave"
        } else {
            "active"
        };
        let notes = match i % 250 {
            0 => "Prefers \"Bob\"\nPart-time",
            1 => "Remote; visits HQ monthly",
            _ => "",
        };
        w.write_record([
            id.as_str(),
            first,
            last,
            email.as_str(),
            rng.pick(DEPARTMENTS),
            rng.pick(TITLES),
            manager.as_str(),
            rng.pick(LOCATIONS),
            hire.as_str(),
            status,
            notes,
        ])?;
    }
    w.flush()?;
    Ok(())
}
