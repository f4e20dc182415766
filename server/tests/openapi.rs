//! The API's OpenAPI document, as the code generates it: every operation answers with its
//! success and the shared error, says who may call it, and describes its path parameters; every
//! schema it refers to is in it.

use serde_json::Value;

fn document() -> Value {
    serde_json::to_value(idgard_server::http::openapi_document()).unwrap()
}

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_schema_referred_to_is_in_the_document() {
    let doc = document();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50, "the document refers to its schemas");
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r} is not a schema of the document"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} is referred to but not in the document"
        );
    }
}

#[test]
fn every_operation_is_complete() {
    let doc = document();
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        assert!(path.starts_with("/api/v1/"), "{path}");
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let at = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{at}: no success answer"
            );
            assert_eq!(
                responses["default"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{at}: no error answer"
            );
            let security = op["security"].as_array().unwrap();
            let open = ["/api/v1/enrol", "/api/v1/agent/token"].contains(&path.as_str());
            let scheme = if open {
                None
            } else if path.starts_with("/api/v1/agent/") {
                Some("agent_token")
            } else {
                Some("admin_token")
            };
            match scheme {
                None => assert_eq!(security, &[serde_json::json!({})], "{at}"),
                Some(s) => assert!(security[0][s].is_array(), "{at}: not behind {s}"),
            }
            for name in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                let declared = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true)
                });
                assert!(declared, "{at}: path parameter `{name}` is not described");
            }
        }
    }
    assert!(operations >= 50, "only {operations} operations");
}

#[test]
fn ids_are_positive_integers_and_lists_take_pages() {
    let doc = document();
    let task = &doc["paths"]["/api/v1/tasks/{id}"]["get"]["parameters"][0];
    assert_eq!(task["schema"]["type"], "integer");
    assert_eq!(task["schema"]["minimum"], 1);
    let agents = doc["paths"]["/api/v1/agents"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = agents.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["after", "limit"]);
    assert_eq!(agents[1]["schema"]["minimum"], 1);
    assert_eq!(agents[1]["schema"]["maximum"], idgard_protocol::PAGE_MAX);
    let log = &doc["paths"]["/api/v1/tasks/{id}/log"]["get"]["parameters"][2];
    assert_eq!(log["name"], "limit");
    assert_eq!(
        log["schema"]["maximum"],
        idgard_server::queue::MAX_PAGE_LINES
    );
}
