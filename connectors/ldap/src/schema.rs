//! The schema from the directory's own subschema (RFC 4512): the attributes of the object
//! classes an account and a group are made of (with their superclasses), each typed by its
//! syntax, required when a class MUSTs it, single-valued when declared so.

use crate::client::{self, Session};
use crate::settings::{Config, GROUP};
use idgard_sdk::{AttributeSchema, AttributeType, EntitySchema, Error};
use std::collections::{BTreeMap, HashMap};

/// One parsed definition: its names, and its fields by keyword.
#[derive(Debug, Default, Clone)]
struct Definition {
    names: Vec<String>,
    fields: HashMap<String, Vec<String>>,
    flags: Vec<String>,
}

/// The entity schemas of the connection.
pub fn read(config: &Config) -> Result<Vec<EntitySchema>, Error> {
    let mut session = Session::open(config)?;
    let subschema = subschema_dn(&mut session)?;
    let mut types: Vec<Definition> = Vec::new();
    let mut classes: Vec<Definition> = Vec::new();
    let mut rules: Vec<Definition> = Vec::new();
    let attrs = vec![
        "attributeTypes".into(),
        "objectClasses".into(),
        "dITContentRules".into(),
    ];
    let request = client::entry_at(&subschema, attrs);
    session.search(&request, None, |entry| {
        for a in entry.attributes {
            let into = if a.atype.eq_ignore_ascii_case("attributeTypes") {
                &mut types
            } else if a.atype.eq_ignore_ascii_case("objectClasses") {
                &mut classes
            } else {
                &mut rules
            };
            into.extend(a.vals.iter().map(|v| parse(&String::from_utf8_lossy(v))));
        }
        Ok(())
    })?;
    let types = by_name(types);
    // A content rule (Active Directory publishes one per structural class, named after it)
    // adds auxiliary classes (`AUX`): `user` gets `sAMAccountName` from `securityPrincipal`.
    let mut classes = by_name(classes);
    for rule in rules {
        for name in &rule.names {
            if let Some(class) = classes.get_mut(&name.to_ascii_lowercase()) {
                for (field, values) in &rule.fields {
                    if matches!(field.as_str(), "AUX" | "MUST" | "MAY") {
                        class
                            .fields
                            .entry(field.clone())
                            .or_default()
                            .extend(values.clone());
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for (entity_type, entity) in config.entities() {
        let mut attrs: BTreeMap<String, (bool, &Definition)> = BTreeMap::new();
        for class in &entity.object_classes {
            collect(&classes, &types, class, &mut attrs, 0);
        }
        let mut schema = vec![
            text(
                &config.key_attribute,
                AttributeType::Text,
                false,
                true,
                true,
            ),
            text("dn", AttributeType::Text, false, false, true),
        ];
        for (name, (required, def)) in attrs {
            if name.eq_ignore_ascii_case(&config.key_attribute) {
                continue;
            }
            let multi = !def.flags.iter().any(|f| f == "SINGLE-VALUE");
            let mut kind = syntax_type(def, &types);
            if config.is_binary(&name) {
                kind = AttributeType::Binary;
            }
            let mut a = text(&name, kind, multi, false, required);
            if entity_type == GROUP && name.eq_ignore_ascii_case(&config.member_attribute) {
                a.type_ = AttributeType::Reference;
                a.references = Some(crate::settings::ACCOUNT.to_owned());
            }
            schema.push(a);
        }
        out.push(EntitySchema {
            name: entity_type.to_owned(),
            attributes: schema,
        });
    }
    Ok(out)
}

fn text(
    name: &str,
    kind: AttributeType,
    multi: bool,
    key: bool,
    required: bool,
) -> AttributeSchema {
    AttributeSchema {
        name: name.to_owned(),
        type_: kind,
        multi_valued: multi,
        key,
        required,
        references: None,
    }
}

/// The DN of the subschema entry, from the root DSE.
fn subschema_dn(session: &mut Session) -> Result<String, Error> {
    let mut dn = None;
    let root_dse = client::entry_at("", vec!["subschemaSubentry".into()]);
    session.search(&root_dse, None, |e| {
        dn = e
            .attributes
            .into_iter()
            .find(|a| a.atype.eq_ignore_ascii_case("subschemaSubentry"))
            .and_then(|a| a.vals.into_iter().next())
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        Ok(())
    })?;
    dn.ok_or_else(|| Error::invalid_data("the directory names no subschema entry"))
}

fn by_name(defs: Vec<Definition>) -> HashMap<String, Definition> {
    let mut out = HashMap::new();
    for d in defs {
        for n in &d.names {
            out.insert(n.to_ascii_lowercase(), d.clone());
        }
    }
    out
}

/// Adds a class's MUST and MAY attributes, and its superclasses', to `attrs`.
fn collect<'t>(
    classes: &HashMap<String, Definition>,
    types: &'t HashMap<String, Definition>,
    class: &str,
    attrs: &mut BTreeMap<String, (bool, &'t Definition)>,
    depth: u32,
) {
    let Some(def) = classes.get(&class.to_ascii_lowercase()) else {
        return;
    };
    if depth > 16 {
        return;
    }
    for (field, required) in [("MUST", true), ("MAY", false)] {
        for name in def.fields.get(field).into_iter().flatten() {
            let Some(t) = types.get(&name.to_ascii_lowercase()) else {
                continue;
            };
            let canonical = t.names.first().cloned().unwrap_or_else(|| name.clone());
            let slot = attrs.entry(canonical).or_insert((required, t));
            slot.0 |= required;
        }
    }
    for sup in ["SUP", "AUX"]
        .iter()
        .flat_map(|f| def.fields.get(*f).into_iter().flatten())
    {
        collect(classes, types, sup, attrs, depth + 1);
    }
}

/// The contract's type of an attribute, from its syntax (inherited through SUP).
fn syntax_type(def: &Definition, types: &HashMap<String, Definition>) -> AttributeType {
    let mut d = def;
    for _ in 0..16 {
        if let Some(syntax) = d.fields.get("SYNTAX").and_then(|v| v.first()) {
            let oid = syntax.split('{').next().unwrap_or("");
            return match oid.rsplit('.').next() {
                _ if !oid.starts_with("1.3.6.1.4.1.1466.115.121.1.") => AttributeType::Text,
                Some("7") => AttributeType::Boolean,
                Some("27") => AttributeType::Integer,
                Some("24") => AttributeType::Datetime,
                Some("12") => AttributeType::Reference,
                Some("5" | "8" | "9" | "10" | "28" | "40" | "49") => AttributeType::Binary,
                _ => AttributeType::Text,
            };
        }
        match d
            .fields
            .get("SUP")
            .and_then(|v| v.first())
            .and_then(|s| types.get(&s.to_ascii_lowercase()))
        {
            Some(sup) => d = sup,
            None => break,
        }
    }
    AttributeType::Text
}

/// Parses one RFC 4512 description: `( oid NAME ( 'a' 'b' ) SUP x MUST ( y $ z ) FLAG ... )`.
fn parse(text: &str) -> Definition {
    let mut tokens: Vec<String> = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '(' | ')' | '$' => {
                tokens.push(c.to_string());
                chars.next();
            }
            '\'' => {
                chars.next();
                let s: String = chars.by_ref().take_while(|&c| c != '\'').collect();
                tokens.push(format!("'{s}"));
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || c == '$' || c == '\'' {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                tokens.push(s);
            }
        }
    }
    let mut def = Definition::default();
    // Skip the opening parenthesis and the OID.
    let mut i = 2;
    while i < tokens.len() {
        let keyword = tokens[i].clone();
        i += 1;
        if keyword == ")" || keyword.starts_with('\'') {
            continue;
        }
        let mut values = Vec::new();
        if tokens.get(i).is_some_and(|t| t == "(") {
            i += 1;
            while i < tokens.len() && tokens[i] != ")" {
                if tokens[i] != "$" {
                    values.push(tokens[i].trim_start_matches('\'').to_owned());
                }
                i += 1;
            }
            i += 1;
        } else if tokens
            .get(i)
            .is_some_and(|t| t != ")" && (t.starts_with('\'') || !is_keyword(t)))
        {
            values.push(tokens[i].trim_start_matches('\'').to_owned());
            i += 1;
        } else {
            def.flags.push(keyword);
            continue;
        }
        if keyword == "NAME" {
            def.names = values;
        } else {
            def.fields.insert(keyword, values);
        }
    }
    def
}

/// Whether a token is a keyword (upper-case letters and dashes) rather than a value.
fn is_keyword(t: &str) -> bool {
    !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_uppercase() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_attribute_types_and_classes() {
        let t =
            parse("( 2.5.4.3 NAME ( 'cn' 'commonName' ) DESC 'RFC4519: common name(s)' SUP name )");
        assert_eq!(t.names, ["cn", "commonName"]);
        assert_eq!(t.fields["SUP"], ["name"]);
        let m = parse(
            "( 0.9.2342.19200300.100.1.3 NAME ( 'mail' 'rfc822Mailbox' ) EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} SINGLE-VALUE )",
        );
        assert_eq!(m.fields["SYNTAX"], ["1.3.6.1.4.1.1466.115.121.1.26{256}"]);
        assert_eq!(m.flags, ["SINGLE-VALUE"]);
        let c = parse(
            "( 2.5.6.6 NAME 'person' DESC 'RFC2256: a person' SUP top STRUCTURAL MUST ( sn $ cn ) MAY ( userPassword $ telephoneNumber ) )",
        );
        assert_eq!(c.names, ["person"]);
        assert_eq!(c.fields["MUST"], ["sn", "cn"]);
        assert_eq!(c.fields["MAY"], ["userPassword", "telephoneNumber"]);
        assert_eq!(c.flags, ["STRUCTURAL"]);
    }

    #[test]
    fn types_follow_syntax_through_superiors() {
        let types = by_name(vec![
            parse("( 2.5.4.41 NAME 'name' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32768} )"),
            parse("( 2.5.4.3 NAME 'cn' SUP name )"),
            parse("( 9 NAME 'jpegPhoto' SYNTAX 1.3.6.1.4.1.1466.115.121.1.28 )"),
            parse("( 10 NAME 'member' SUP distinguishedName )"),
            parse("( 11 NAME 'distinguishedName' SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )"),
        ]);
        assert_eq!(syntax_type(&types["cn"], &types), AttributeType::Text);
        assert_eq!(
            syntax_type(&types["jpegphoto"], &types),
            AttributeType::Binary
        );
        assert_eq!(
            syntax_type(&types["member"], &types),
            AttributeType::Reference
        );
    }
}
