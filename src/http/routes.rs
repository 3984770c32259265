//! The route table: one row per path, naming what each of its methods asks for and the scope
//! that needs. [`matchit`] (the radix-tree router axum is built on) matches a path against the
//! rows' templates; the router is built once per container, on first use.
//!
//! What a path matches:
//! - the path is the stage-less one (`path_of` in `http/mod.rs`), with one trailing slash
//!   ignored; nothing is decoded or normalised: `%2F`, `.` and `..` are text, and `//` makes an
//!   empty segment, which no template matches;
//! - a `{parameter}` is one non-empty segment, handed over as sent: whether `{id}` is a UUID
//!   is judged after authentication (`RESOURCE_NOT_FOUND`, as for an unknown webhook);
//! - another method on a known path is 405 with the row's methods as `Allow`, in the row's
//!   order; any other path is 404 `NOT_FOUND`.
//!
//! A route is added as a row and its [`Operation`] (the handler matches on it). [`Matched`]
//! hands over `{deliveryId}` beside `{id}`, and the idempotency scope (`claim` in
//! `http/mod.rs`) fills it in as it fills in `{id}`, so that resending two deliveries under
//! one `Idempotency-Key` is two scopes.

use std::sync::LazyLock;

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
    ListDeliveries,
    GetDelivery,
    ResendDelivery,
    Recover,
}

/// One path of the API: its template (as logged and metered, and the idempotency scope's
/// route) and, in `Allow`'s order, each method with the operation it asks for and the scope
/// the key must hold.
struct Route {
    template: &'static str,
    methods: &'static [(Method, Operation, Scope)],
}

const fn row(template: &'static str, methods: &'static [(Method, Operation, Scope)]) -> Route {
    Route { template, methods }
}

/// Every route of the API.
#[rustfmt::skip]
const ROUTES: &[Route] = {
    use Operation::*;
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    const PATCH: Method = Method::PATCH;
    const DELETE: Method = Method::DELETE;
    const READ: Scope = Scope::ReadWebhooks;
    const WRITE: Scope = Scope::WriteWebhooks;
    &[
        row("/webhooks",                    &[(GET, List, READ), (POST, Create, WRITE)]),
        row("/webhooks/{id}",               &[(GET, Get, READ), (PATCH, Update, WRITE),
                                              (DELETE, Delete, WRITE)]),
        row("/webhooks/{id}/reset-circuit", &[(POST, ResetCircuit, WRITE)]),
        row("/webhooks/{id}/test",          &[(POST, Test, WRITE)]),
        row("/webhooks/{id}/rotate-secret", &[(POST, RotateSecret, WRITE)]),
        row("/webhooks/{id}/deliveries",    &[(GET, ListDeliveries, READ)]),
        row("/webhooks/{id}/deliveries/{deliveryId}",
                                            &[(GET, GetDelivery, READ)]),
        row("/webhooks/{id}/deliveries/{deliveryId}/resend",
                                            &[(POST, ResendDelivery, WRITE)]),
        row("/webhooks/{id}/recover",       &[(POST, Recover, WRITE)]),
    ]
};

/// The router over [`ROUTES`].
static ROUTER: LazyLock<Router> = LazyLock::new(|| Router::new(ROUTES));

/// A request matched to an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    pub operation: Operation,
    /// The scope the key must hold for it.
    pub scope: Scope,
    /// The route's template, for logs.
    pub template: &'static str,
    /// The `{id}` segment as sent.
    pub id: Option<&'a str>,
    /// The `{deliveryId}` segment as sent.
    pub delivery_id: Option<&'a str>,
}

/// The route template a path matches (for logs and metrics), or `"unmatched"`.
pub fn template_of(path: &str) -> &'static str {
    ROUTER
        .find(path)
        .map_or("unmatched", |(entry, _)| entry.route.template)
}

/// Matches `path` (stage-less, one trailing slash ignored) and `method`.
pub fn route<'a>(path: &'a str, method: &Method) -> Result<Matched<'a>, ApiError> {
    ROUTER.route(path, method)
}

/// A row as the router holds it: the route and its `Allow`, joined once from its methods.
struct Entry {
    route: &'static Route,
    allow: String,
}

struct Router(matchit::Router<Entry>);

impl Router {
    /// # Panics
    /// When a template is not one, or two overlap (`/webhooks/{id}` beside `/webhooks/{key}`):
    /// a bug in the table, which every unit test of this module would show.
    fn new(routes: &'static [Route]) -> Self {
        let mut router = matchit::Router::new();
        for route in routes {
            let allow = route
                .methods
                .iter()
                .map(|(method, _, _)| method.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            if let Err(error) = router.insert(route.template, Entry { route, allow }) {
                panic!("route {}: {error}", route.template);
            }
        }
        Router(router)
    }

    /// The row `path` matches and its parameters.
    fn find<'r, 'p>(&'r self, path: &'p str) -> Option<(&'r Entry, matchit::Params<'r, 'p>)> {
        let path = path.strip_suffix('/').unwrap_or(path);
        let matched = self.0.at(path).ok()?;
        Some((matched.value, matched.params))
    }

    fn route<'p>(&'static self, path: &'p str, method: &Method) -> Result<Matched<'p>, ApiError> {
        let (entry, params) = self.find(path).ok_or(ApiError::NoRoute)?;
        let (_, operation, scope) = entry
            .route
            .methods
            .iter()
            .find(|(m, _, _)| m == method)
            .ok_or(ApiError::MethodNotAllowed {
                allow: entry.allow.as_str(),
            })?;
        Ok(Matched {
            operation: *operation,
            scope: *scope,
            template: entry.route.template,
            id: params.get("id"),
            delivery_id: params.get("deliveryId"),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
    fn every_other_method_on_every_route_is_405_with_its_rows_methods_in_order() {
        let others = [Method::PUT, Method::HEAD, Method::OPTIONS, Method::TRACE];
        for (path, allow) in [
            ("/webhooks".to_owned(), "GET, POST"),
            (format!("/webhooks/{ID}/"), "GET, PATCH, DELETE"),
            (format!("/webhooks/{ID}/test"), "POST"),
            (format!("/webhooks/{ID}/rotate-secret/"), "POST"),
        ] {
            for method in others.iter().chain([&Method::from_bytes(b"BREW").unwrap()]) {
                assert_eq!(
                    route(&path, method),
                    Err(ApiError::MethodNotAllowed { allow }),
                    "{method} {path}"
                );
            }
        }
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
    fn empty_segments_and_unknown_spellings_match_no_route() {
        for path in [
            "//",
            "//webhooks",
            "/webhooks//x",
            "/webhooks///",
            "webhooks",
            "/WEBHOOKS",
            "/Webhooks",
            "/prod/webhooks",
            "/webhooks?companyId=x",
            "/webhooks%2F",
            &format!("/webhooks/{ID}//test"),
            &format!("/webhooks/{ID}/test//"),
            &format!("/webhooks/{ID}/Test"),
            &format!("/webhooks/{ID}/tes"),
            &format!("/webhooks/{ID}/testx"),
            &format!("/webhooks/{ID}/%74est"),
            &format!("/webhooks/{ID}/../test"),
            &format!("/webhooks/{ID}/test/{ID}"),
            &format!("/webhooks/{ID}/deliveries//"),
            &format!("/webhooks/{ID}/deliveries/{ID}/x"),
            &format!("/webhooks/{ID}/recover/{ID}"),
        ] {
            for method in [Method::GET, Method::POST] {
                assert_eq!(
                    route(path, &method),
                    Err(ApiError::NoRoute),
                    "{method} {path}"
                );
            }
            assert_eq!(template_of(path), "unmatched", "{path}");
        }
    }

    #[test]
    fn any_id_segment_matches_the_route_and_is_judged_later() {
        let matched = route("/webhooks/not-a-uuid", &Method::GET).unwrap();
        assert_eq!(matched.id, Some("not-a-uuid"));
    }

    #[test]
    fn an_id_segment_is_handed_over_as_sent_never_decoded_or_normalised() {
        for id in [
            "..",
            ".",
            "%2F",
            "%2e%2e",
            "{id}",
            " ",
            "é",
            "test",
            "reset-circuit",
            "webhooks",
            &format!("{ID}%2Ftest"),
            &ID.to_uppercase(),
        ] {
            for path in [format!("/webhooks/{id}"), format!("/webhooks/{id}/")] {
                let matched = route(&path, &Method::GET).unwrap();
                assert_eq!(matched.operation, Operation::Get, "{path}");
                assert_eq!(matched.id, Some(id), "{path}");
            }
            let path = format!("/webhooks/{id}/test");
            let matched = route(&path, &Method::POST).unwrap();
            assert_eq!((matched.operation, matched.id), (Operation::Test, Some(id)));
        }
    }

    #[test]
    fn very_long_paths_are_matched_like_short_ones() {
        let long_id = "a".repeat(100_000);
        let path = format!("/webhooks/{long_id}/rotate-secret");
        let matched = route(&path, &Method::POST).unwrap();
        assert_eq!(matched.operation, Operation::RotateSecret);
        assert_eq!(matched.id, Some(long_id.as_str()));
        let deep = format!("/webhooks{}", "/a".repeat(50_000));
        assert_eq!(route(&deep, &Method::GET), Err(ApiError::NoRoute));
        assert_eq!(template_of(&deep), "unmatched");
    }

    #[test]
    fn each_path_logs_its_routes_template() {
        for (path, template) in [
            ("/webhooks".to_owned(), "/webhooks"),
            ("/webhooks/".to_owned(), "/webhooks"),
            (format!("/webhooks/{ID}"), "/webhooks/{id}"),
            ("/webhooks/not-a-uuid/".to_owned(), "/webhooks/{id}"),
            (
                format!("/webhooks/{ID}/reset-circuit"),
                "/webhooks/{id}/reset-circuit",
            ),
            (format!("/webhooks/{ID}/test/"), "/webhooks/{id}/test"),
            (
                format!("/webhooks/{ID}/rotate-secret"),
                "/webhooks/{id}/rotate-secret",
            ),
            ("/webhooks/x/unknown".to_owned(), "unmatched"),
        ] {
            assert_eq!(template_of(&path), template, "{path}");
        }
        let path = format!("/webhooks/{ID}/test");
        let matched = route(&path, &Method::POST).unwrap();
        assert_eq!(matched.template, "/webhooks/{id}/test");
    }

    #[test]
    fn reads_need_read_and_changes_need_write() {
        let id_path = format!("/webhooks/{ID}");
        for (path, method, scope) in [
            ("/webhooks", Method::GET, Scope::ReadWebhooks),
            (&id_path as &str, Method::GET, Scope::ReadWebhooks),
            ("/webhooks", Method::POST, Scope::WriteWebhooks),
            (&id_path, Method::PATCH, Scope::WriteWebhooks),
            (&id_path, Method::DELETE, Scope::WriteWebhooks),
            (
                &format!("{id_path}/reset-circuit"),
                Method::POST,
                Scope::WriteWebhooks,
            ),
            (
                &format!("{id_path}/test"),
                Method::POST,
                Scope::WriteWebhooks,
            ),
            (
                &format!("{id_path}/rotate-secret"),
                Method::POST,
                Scope::WriteWebhooks,
            ),
        ] {
            assert_eq!(
                route(path, &method).unwrap().scope,
                scope,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn every_operation_has_one_row_and_no_row_names_a_method_twice() {
        let all = [
            Operation::Create,
            Operation::List,
            Operation::Get,
            Operation::Update,
            Operation::Delete,
            Operation::ResetCircuit,
            Operation::Test,
            Operation::RotateSecret,
            Operation::ListDeliveries,
            Operation::GetDelivery,
            Operation::ResendDelivery,
            Operation::Recover,
        ];
        for operation in all {
            let rows = ROUTES
                .iter()
                .filter(|r| r.methods.iter().any(|(_, op, _)| *op == operation))
                .count();
            assert_eq!(rows, 1, "{operation:?}");
        }
        for route in ROUTES {
            for (i, (method, _, _)) in route.methods.iter().enumerate() {
                assert!(
                    !route.methods[..i].iter().any(|(m, _, _)| m == method),
                    "{method} twice on {}",
                    route.template
                );
            }
        }
    }

    #[test]
    fn a_nested_template_with_two_parameters_is_one_row() {
        let found = |path: &str| {
            ROUTER.find(path).map(|(entry, params)| {
                (
                    entry.route.template,
                    params.get("id").map(str::to_owned),
                    params.get("deliveryId").map(str::to_owned),
                )
            })
        };
        let resend = "/webhooks/{id}/deliveries/{deliveryId}/resend";
        assert_eq!(
            found("/webhooks/w1/deliveries/d1/resend/"),
            Some((resend, Some("w1".into()), Some("d1".into())))
        );
        assert_eq!(
            found("/webhooks/w1/deliveries/d1"),
            Some((
                "/webhooks/{id}/deliveries/{deliveryId}",
                Some("w1".into()),
                Some("d1".into())
            ))
        );
        assert_eq!(
            found("/webhooks/w1/deliveries"),
            Some(("/webhooks/{id}/deliveries", Some("w1".into()), None))
        );
        assert_eq!(
            found("/webhooks/w1/test").map(|(t, ..)| t),
            Some("/webhooks/{id}/test")
        );
        for path in [
            "/webhooks/w1/deliveries//resend",
            "/webhooks/w1/deliveries/d1/resend/x",
            "/webhooks//deliveries/d1",
            "/webhooks/w1/recover/d1",
        ] {
            assert_eq!(found(path), None, "{path}");
        }
        assert_eq!(
            ROUTER.route("/webhooks/w1/deliveries/d1/resend", &Method::GET),
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        );
        let matched = ROUTER
            .route("/webhooks/w1/deliveries/d1/resend", &Method::POST)
            .unwrap();
        assert_eq!(
            (matched.template, matched.id, matched.delivery_id),
            (resend, Some("w1"), Some("d1"))
        );
        assert_eq!(matched.operation, Operation::ResendDelivery);
    }

    #[test]
    fn the_delivery_logs_routes_map_to_their_operations_and_scopes() {
        for (path, method, operation, scope) in [
            (
                format!("/webhooks/{ID}/deliveries"),
                Method::GET,
                Operation::ListDeliveries,
                Scope::ReadWebhooks,
            ),
            (
                format!("/webhooks/{ID}/deliveries/{ID}/"),
                Method::GET,
                Operation::GetDelivery,
                Scope::ReadWebhooks,
            ),
            (
                format!("/webhooks/{ID}/deliveries/{ID}/resend"),
                Method::POST,
                Operation::ResendDelivery,
                Scope::WriteWebhooks,
            ),
            (
                format!("/webhooks/{ID}/recover/"),
                Method::POST,
                Operation::Recover,
                Scope::WriteWebhooks,
            ),
        ] {
            let matched = route(&path, &method).unwrap();
            assert_eq!(
                (matched.operation, matched.scope),
                (operation, scope),
                "{path}"
            );
        }
        for (path, allow) in [
            (format!("/webhooks/{ID}/deliveries"), "GET"),
            (format!("/webhooks/{ID}/deliveries/{ID}"), "GET"),
            (format!("/webhooks/{ID}/deliveries/{ID}/resend"), "POST"),
            (format!("/webhooks/{ID}/recover"), "POST"),
        ] {
            for method in [Method::PUT, Method::DELETE, Method::PATCH] {
                assert_eq!(
                    route(&path, &method),
                    Err(ApiError::MethodNotAllowed { allow }),
                    "{method} {path}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// Any non-empty segment without a slash is an id, handed over exactly as sent.
        #[test]
        fn any_segment_is_an_id_as_sent(id in "[^/]{1,40}") {
            for (path, method, operation) in [
                (format!("/webhooks/{id}"), Method::GET, Operation::Get),
                (format!("/webhooks/{id}/"), Method::DELETE, Operation::Delete),
                (format!("/webhooks/{id}/test/"), Method::POST, Operation::Test),
            ] {
                let matched = route(&path, &method).unwrap();
                prop_assert_eq!(matched.operation, operation);
                prop_assert_eq!(matched.id, Some(id.as_str()));
            }
        }

        /// An empty segment anywhere but the one trailing slash matches no route.
        #[test]
        fn an_empty_segment_matches_no_route(
            before in "(/[a-z0-9-]{1,8}){0,3}",
            after in "(/[a-z0-9-]{1,8}){1,3}/?|/",
            method in prop::sample::select(vec![Method::GET, Method::POST, Method::DELETE]),
        ) {
            let path = format!("/webhooks{before}/{after}");
            prop_assert_eq!(route(&path, &method), Err(ApiError::NoRoute), "{}", path);
            prop_assert_eq!(template_of(&path), "unmatched");
        }
    }
}
