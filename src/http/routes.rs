//! The route table: each path, the operations its methods map to, and its `Allow`.

use lambda_http::http::Method;

use crate::domain::Scope;
use crate::error::ApiError;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    List,
    Get,
    Update,
    Delete,
    ResetCircuit,
    Test,
    RotateSecret,
}

impl Operation {
    /// The scope the key must hold.
    pub fn scope(self) -> Scope {
        match self {
            Operation::List | Operation::Get => Scope::ReadWebhooks,
            Operation::Create
            | Operation::Update
            | Operation::Delete
            | Operation::ResetCircuit
            | Operation::Test
            | Operation::RotateSecret => Scope::WriteWebhooks,
        }
    }
}

/// One path of the API.
struct Route {
    /// The path's pattern, as logged (`/webhooks/{id}`).
    template: &'static str,
    /// What follows `/webhooks/{id}`, if the path has an id: `""` for the webhook itself.
    suffix: Option<&'static str>,
    methods: &'static [(Method, Operation)],
    allow: &'static str,
}

const ROUTES: &[Route] = &[
    Route {
        template: "/webhooks",
        suffix: None,
        methods: &[
            (Method::GET, Operation::List),
            (Method::POST, Operation::Create),
        ],
        allow: "GET, POST",
    },
    Route {
        template: "/webhooks/{id}",
        suffix: Some(""),
        methods: &[
            (Method::GET, Operation::Get),
            (Method::PATCH, Operation::Update),
            (Method::DELETE, Operation::Delete),
        ],
        allow: "GET, PATCH, DELETE",
    },
    Route {
        template: "/webhooks/{id}/reset-circuit",
        suffix: Some("reset-circuit"),
        methods: &[(Method::POST, Operation::ResetCircuit)],
        allow: "POST",
    },
    Route {
        template: "/webhooks/{id}/test",
        suffix: Some("test"),
        methods: &[(Method::POST, Operation::Test)],
        allow: "POST",
    },
    Route {
        template: "/webhooks/{id}/rotate-secret",
        suffix: Some("rotate-secret"),
        methods: &[(Method::POST, Operation::RotateSecret)],
        allow: "POST",
    },
];

/// A request matched to an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    pub operation: Operation,
    /// The route's pattern, for logs.
    pub template: &'static str,
    /// The `{id}` segment as sent.
    pub id: Option<&'a str>,
}

/// The route pattern a path matches (for logs), or `"unmatched"`.
pub fn template_of(path: &str) -> &'static str {
    find(path).map_or("unmatched", |(route, _)| route.template)
}

/// Matches `path` (stage-less, one trailing slash ignored) and `method`.
pub fn route<'a>(path: &'a str, method: &Method) -> Result<Matched<'a>, ApiError> {
    let (route, id) = find(path).ok_or(ApiError::NoRoute)?;
    let operation = route
        .methods
        .iter()
        .find(|(m, _)| m == method)
        .map(|(_, operation)| *operation)
        .ok_or(ApiError::MethodNotAllowed { allow: route.allow })?;
    Ok(Matched {
        operation,
        template: route.template,
        id,
    })
}

fn find(path: &str) -> Option<(&'static Route, Option<&str>)> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let rest = path.strip_prefix("/webhooks")?;
    if rest.is_empty() {
        return ROUTES
            .iter()
            .find(|r| r.suffix.is_none())
            .map(|r| (r, None));
    }
    let rest = rest.strip_prefix('/')?;
    let (id, suffix) = match rest.split_once('/') {
        None => (rest, ""),
        Some((_, "")) => return None,
        Some(pair) => pair,
    };
    if id.is_empty() {
        return None;
    }
    ROUTES
        .iter()
        .find(|r| r.suffix == Some(suffix))
        .map(|r| (r, Some(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1b4e28ba-2fa1-4d2b-883f-0016d3cca427";

    #[test]
    fn every_path_and_method_maps_to_its_operation() {
        let cases = [
            ("/webhooks", Method::POST, Operation::Create),
            ("/webhooks", Method::GET, Operation::List),
            ("/webhooks/", Method::GET, Operation::List),
            (
                &format!("/webhooks/{ID}") as &str,
                Method::GET,
                Operation::Get,
            ),
            (
                &format!("/webhooks/{ID}/"),
                Method::PATCH,
                Operation::Update,
            ),
            (
                &format!("/webhooks/{ID}"),
                Method::DELETE,
                Operation::Delete,
            ),
            (
                &format!("/webhooks/{ID}/reset-circuit"),
                Method::POST,
                Operation::ResetCircuit,
            ),
            (
                &format!("/webhooks/{ID}/test"),
                Method::POST,
                Operation::Test,
            ),
            (
                &format!("/webhooks/{ID}/rotate-secret"),
                Method::POST,
                Operation::RotateSecret,
            ),
        ];
        for (path, method, operation) in cases {
            assert_eq!(
                route(path, &method).unwrap().operation,
                operation,
                "{method} {path}"
            );
        }
        assert_eq!(
            route(&format!("/webhooks/{ID}"), &Method::GET).unwrap().id,
            Some(ID)
        );
    }

    #[test]
    fn other_methods_on_a_known_path_are_405_with_its_allow() {
        assert_eq!(
            route("/webhooks", &Method::DELETE),
            Err(ApiError::MethodNotAllowed { allow: "GET, POST" })
        );
        assert_eq!(
            route(&format!("/webhooks/{ID}"), &Method::POST),
            Err(ApiError::MethodNotAllowed {
                allow: "GET, PATCH, DELETE"
            })
        );
        assert_eq!(
            route(&format!("/webhooks/{ID}/reset-circuit"), &Method::GET),
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        );
    }

    #[test]
    fn other_paths_are_404() {
        for path in [
            "/",
            "",
            "/webhook",
            "/webhooksx",
            "/webhooks//",
            "/webhooks//reset-circuit",
            "/other/webhooks",
            &format!("/webhooks/{ID}/unknown"),
            &format!("/webhooks/{ID}/reset-circuit/x"),
            &format!("/webhooks/{ID}//"),
        ] {
            assert_eq!(route(path, &Method::GET), Err(ApiError::NoRoute), "{path}");
        }
    }

    #[test]
    fn any_id_segment_matches_the_route_and_is_judged_later() {
        let matched = route("/webhooks/not-a-uuid", &Method::GET).unwrap();
        assert_eq!(matched.id, Some("not-a-uuid"));
    }

    #[test]
    fn reads_need_read_and_changes_need_write() {
        assert_eq!(Operation::List.scope(), Scope::ReadWebhooks);
        assert_eq!(Operation::Get.scope(), Scope::ReadWebhooks);
        for op in [
            Operation::Create,
            Operation::Update,
            Operation::Delete,
            Operation::ResetCircuit,
            Operation::Test,
            Operation::RotateSecret,
        ] {
            assert_eq!(op.scope(), Scope::WriteWebhooks);
        }
    }
}
