//! The endpoint a webhook is delivered to, and the policy that decides which URLs are allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use super::address;
use super::text::length_within;

/// The longest URL the documentation allows, in characters.
pub const MAX_URL_CHARS: u64 = 2048;

/// Deployment-wide URL rules.
#[derive(Clone, Copy, Debug)]
pub struct UrlPolicy {
    /// Whether `http` (and loopback hosts) are allowed for `localhost`, `127.0.0.1` and `[::1]`,
    /// as the documentation promises. Production stages may switch it off.
    pub allow_localhost: bool,
}

impl Default for UrlPolicy {
    fn default() -> Self {
        Self {
            allow_localhost: true,
        }
    }
}

/// A URL that passed every rule of the policy. Holds the text exactly as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl(String);

/// DNS suffixes that name private or special-use hosts (RFC 6761, RFC 6762, cloud metadata).
const PRIVATE_SUFFIXES: &[&str] = &[
    "localhost",
    "local",
    "internal",
    "localdomain",
    "home.arpa",
    "arpa",
    "onion",
    "invalid",
    "test",
    "example",
    "alt",          // RFC 9476: names outside the DNS
    "localdomain4", // localhost4.localdomain4 (Red Hat's /etc/hosts)
    "localdomain6", // localhost6.localdomain6
    "svc",          // Kubernetes services (`db.ns.svc`); `*.cluster.local` is under `local`
];

impl WebhookUrl {
    /// Checks `input` against the contract's URL rules; the error is the message for the client.
    pub fn parse(input: &str, policy: UrlPolicy) -> Result<Self, String> {
        if !length_within(input, 1, MAX_URL_CHARS) {
            return Err(format!("url must be 1 to {MAX_URL_CHARS} characters"));
        }
        // Only the characters RFC 3986 allows. The WHATWG parser would otherwise quietly mend
        // the input (`\\` becomes `/`, spaces get percent-encoded), so that the URL we check
        // and the text another client later parses could name different hosts.
        if !input.bytes().all(is_uri_char) {
            return Err(
                "url must be a valid URL (RFC 3986 characters only; percent-encode others)".into(),
            );
        }
        let url = Url::parse(input).map_err(|_| "url must be a valid URL".to_string())?;
        let is_http = match url.scheme() {
            "https" => false,
            "http" => true,
            _ => return Err("url must use https".into()),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("url must not contain credentials".into());
        }
        if url.fragment().is_some() {
            return Err("url must not contain a fragment".into());
        }
        let host = url
            .host()
            .ok_or_else(|| "url must be a valid URL".to_string())?;
        if let Host::Ipv4(_) = host {
            // The parser has read any IPv4 spelling into an address; judge what was typed.
            if written_host(input)
                .and_then(address::parse_canonical_v4)
                .is_none()
            {
                return Err(NON_CANONICAL_IPV4.into());
            }
        }
        let local = policy.allow_localhost && is_allowed_localhost(&host, input);
        if is_http && !local {
            return Err(if policy.allow_localhost {
                "url must use https (http is only allowed for localhost)".into()
            } else {
                "url must use https".into()
            });
        }
        if !local {
            check_public_host(&host)?;
        }
        Ok(Self(input.to_owned()))
    }

    /// The URL as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const NON_CANONICAL_IPV4: &str = "url host must be an IPv4 address in canonical dotted decimal \
     (four numbers from 0 to 255 without leading zeros, such as 8.8.8.8)";

/// RFC 3986 unreserved, reserved and `%` characters.
fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// The three hosts the localhost exception names, spelled as named: `2130706433` or
/// `[::ffff:127.0.0.1]` also reach loopback, but nobody writes them by accident.
pub(crate) fn is_allowed_localhost(host: &Host<&str>, input: &str) -> bool {
    let spelled = match host {
        Host::Domain(name) => *name == "localhost",
        Host::Ipv4(ip) => *ip == Ipv4Addr::LOCALHOST,
        Host::Ipv6(ip) => *ip == Ipv6Addr::LOCALHOST,
    };
    spelled
        && written_host(input).is_some_and(|written| {
            ["localhost", "127.0.0.1", "[::1]"]
                .iter()
                .any(|allowed| written.eq_ignore_ascii_case(allowed))
        })
}

/// The host as written in `input` (between `://` and the port, path, query or fragment).
/// Only called once the URL parsed and has no user-info.
fn written_host(input: &str) -> Option<&str> {
    let rest = &input[input.find("://")? + 3..];
    let authority = rest.split(['/', '?', '#', '\\']).next()?;
    if authority.starts_with('[') {
        return authority.find(']').map(|end| &authority[..=end]);
    }
    authority.split(':').next()
}

fn check_public_host(host: &Host<&str>) -> Result<(), String> {
    const NOT_PUBLIC: &str = "url must not point to a private, loopback or reserved address";
    match host {
        Host::Ipv4(ip) if !address::is_public(IpAddr::V4(*ip)) => Err(NOT_PUBLIC.into()),
        Host::Ipv6(ip) if !address::is_public(IpAddr::V6(*ip)) => Err(NOT_PUBLIC.into()),
        Host::Ipv4(_) | Host::Ipv6(_) => Ok(()),
        Host::Domain(name) => {
            // The URL parser has lowercased and IDNA-encoded the name; a trailing dot is the
            // same host in DNS, so it must not slip past the suffix checks. Any other empty
            // label (`localhost..`, `a..b.com`, `.example.com`) is not a DNS name, and resolvers
            // differ on what they make of it.
            let name = name.strip_suffix('.').unwrap_or(name);
            if name.split('.').any(str::is_empty) {
                return Err("url host must be a valid domain name (no empty labels)".into());
            }
            let is_private = PRIVATE_SUFFIXES
                .iter()
                .any(|suffix| name == *suffix || name.ends_with(&format!(".{suffix}")));
            if is_private {
                Err(NOT_PUBLIC.into())
            } else if !name.contains('.') {
                // Single-label names (`metadata`, `intranet`) only resolve inside a private network.
                Err("url host must be a fully qualified public domain name".into())
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: UrlPolicy = UrlPolicy {
        allow_localhost: true,
    };
    const PROD: UrlPolicy = UrlPolicy {
        allow_localhost: false,
    };

    fn ok(url: &str) -> bool {
        WebhookUrl::parse(url, LOCAL).is_ok()
    }

    #[test]
    fn accepts_https_url_with_public_host() {
        assert!(ok("https://api.example.com/webhooks/instaview"));
        assert!(ok("https://api.example.com:8443/hook?x=1"));
        assert!(ok("https://8.8.8.8/hook"));
        assert!(ok("https://[2606:4700:4700::1111]/hook"));
    }

    #[test]
    fn keeps_url_exactly_as_given() {
        let url = WebhookUrl::parse("HTTPS://Api.Example.com/Path", LOCAL).unwrap();
        assert_eq!(url.as_str(), "HTTPS://Api.Example.com/Path");
    }

    #[test]
    fn accepts_url_of_2048_characters_and_rejects_2049() {
        let base = "https://api.example.com/";
        let at_limit = format!("{base}{}", "a".repeat(2048 - base.len()));
        assert_eq!(at_limit.chars().count(), 2048);
        assert!(ok(&at_limit));
        let over = format!("{at_limit}a");
        assert_eq!(
            WebhookUrl::parse(&over, LOCAL).unwrap_err(),
            "url must be 1 to 2048 characters"
        );
    }

    #[test]
    fn counts_url_length_in_characters_not_bytes() {
        // URLs are ASCII, so characters and bytes agree; the length error still comes first
        // for a long non-ASCII input, naming the limit rather than the character.
        let base = "https://api.example.com/";
        let url = format!("{base}{}", "é".repeat(2049));
        assert_eq!(
            WebhookUrl::parse(&url, LOCAL).unwrap_err(),
            "url must be 1 to 2048 characters"
        );
    }

    #[test]
    fn rejects_empty_and_relative_and_garbage_urls() {
        assert!(!ok(""));
        assert!(!ok("/webhooks"));
        assert!(!ok("api.example.com/webhooks"));
        assert!(!ok("https://"));
        assert!(!ok("not a url"));
        assert!(!ok("https://exa mple.com/"));
    }

    #[test]
    fn rejects_characters_outside_rfc_3986() {
        for url in [
            "https://evil.example.com\\@good.example.com/",
            "https://api.example.com/a b",
            "https://api.example.com/\u{e9}",
            "https://m\u{fc}nchen.example/",
            " https://api.example.com/",
            "https://api.example.com/\t",
            "https://api.example.com/<script>",
            "https://api.example.com/\"x\"",
        ] {
            assert!(!ok(url), "{url:?}");
        }
        assert!(ok("https://xn--mnchen-3ya.example.com/caf%C3%A9?a=1&b=[2]"));
    }

    #[test]
    fn rejects_http_url_for_non_localhost_host() {
        assert_eq!(
            WebhookUrl::parse("http://api.example.com/hook", LOCAL).unwrap_err(),
            "url must use https (http is only allowed for localhost)"
        );
        assert!(!ok("HTTP://api.example.com/hook"));
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert!(ok("HTTPS://api.example.com/hook"));
        assert!(ok("HTTP://localhost:3000/hook"));
    }

    #[test]
    fn accepts_http_for_localhost_127_0_0_1_and_ipv6_loopback() {
        assert!(ok("http://localhost:3000/hook"));
        assert!(ok("http://LOCALHOST/hook"));
        assert!(ok("http://127.0.0.1:8080/hook"));
        assert!(ok("http://[::1]:8080/hook"));
        assert!(ok("https://localhost/hook"));
    }

    #[test]
    fn rejects_localhost_when_the_exception_is_switched_off() {
        for url in [
            "http://localhost/hook",
            "https://localhost/hook",
            "https://127.0.0.1/hook",
            "http://[::1]/hook",
        ] {
            assert!(WebhookUrl::parse(url, PROD).is_err(), "{url}");
        }
        assert!(WebhookUrl::parse("https://api.example.com/hook", PROD).is_ok());
    }

    #[test]
    fn rejects_other_loopback_forms_even_with_the_localhost_exception() {
        for url in [
            "http://127.0.0.2/",
            "https://127.0.0.2/",
            "http://[::ffff:127.0.0.1]/",
            "https://[::ffff:127.0.0.1]/",
            "http://2130706433/",
            "https://0x7f.1/",
            "https://017700000001/",
            "https://0/",
            "https://foo.localhost/",
            "https://localhost.localdomain/",
        ] {
            assert!(!ok(url), "{url} must be refused");
        }
    }

    #[test]
    fn rejects_other_schemes() {
        for url in [
            "ftp://example.com/",
            "javascript:alert(1)",
            "data:text/plain,hi",
            "file:///etc/passwd",
            "wss://example.com/",
        ] {
            assert!(!ok(url), "{url}");
        }
    }

    #[test]
    fn rejects_url_with_credentials() {
        assert_eq!(
            WebhookUrl::parse("https://user:pass@api.example.com/", LOCAL).unwrap_err(),
            "url must not contain credentials"
        );
        assert!(!ok("https://user@api.example.com/"));
        assert!(!ok("https://:pass@api.example.com/"));
    }

    #[test]
    fn rejects_url_with_fragment_even_empty() {
        assert_eq!(
            WebhookUrl::parse("https://api.example.com/#x", LOCAL).unwrap_err(),
            "url must not contain a fragment"
        );
        assert!(!ok("https://api.example.com/#"));
    }

    #[test]
    fn rejects_private_and_reserved_ip_literals() {
        for url in [
            "https://10.0.0.1/",
            "https://172.16.5.4/",
            "https://192.168.0.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
            "https://192.0.2.1/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[2002:a9fe:a9fe::]/",
            "https://[2001:db8::1]/",
            "https://[ff02::1]/",
            "https://[::]/",
        ] {
            assert_eq!(
                WebhookUrl::parse(url, LOCAL).unwrap_err(),
                "url must not point to a private, loopback or reserved address",
                "{url}"
            );
        }
    }

    #[test]
    fn rejects_odd_ipv4_spellings_of_private_addresses() {
        for url in [
            "https://0xa9fea9fe/",
            "https://2852039166/",
            "https://0251.0376.0251.0376/",
            "https://10.1/",
            "https://0x0a.0.0.1/",
        ] {
            assert!(!ok(url), "{url}");
        }
    }

    #[test]
    fn rejects_ipv4_literals_that_are_not_canonical_dotted_decimal() {
        for url in [
            "https://127.1/",
            "http://127.1/",
            "https://0x7f.1/",
            "https://2130706433/",
            "https://017700000001/",
            "https://169.0254.169.0254/",
            "https://0x08.8.8.8/",
            "https://134744072/",
            "https://8.8.8.8./",
            "https://%38.8.8.8/",
        ] {
            assert_eq!(
                WebhookUrl::parse(url, LOCAL).unwrap_err(),
                NON_CANONICAL_IPV4,
                "{url}"
            );
        }
        // Not even valid octal: the URL parser refuses it first.
        assert!(!ok("https://8.8.08.8/"));
        assert!(ok("https://8.8.8.8:443/hook"));
        assert!(ok("http://127.0.0.1/hook"));
    }

    #[test]
    fn rejects_localhost4_and_localhost6_localdomain_names() {
        for url in [
            "https://localhost4.localdomain4/",
            "https://localhost6.localdomain6/",
            "https://a.localhost4.localdomain4/",
            "https://x.localhost6.localdomain6./",
            "https://localhost4/",
            "https://localhost6/",
        ] {
            assert!(!ok(url), "{url}");
        }
    }

    #[test]
    fn rejects_host_names_with_more_than_one_trailing_dot_or_empty_labels() {
        for url in [
            "https://localhost../",
            "https://metadata.google.internal../",
            "https://api.example.com../",
            "https://api.example.com.../",
            "https://api..example.com/",
            "https://.example.com/",
        ] {
            assert!(!ok(url), "{url}");
        }
        assert!(ok("https://api.example.com./hook"));
    }

    #[test]
    fn rejects_alt_names() {
        assert!(!ok("https://alt/"));
        assert!(!ok("https://service.alt/"));
        assert!(!ok("https://a.b.alt./"));
    }

    #[test]
    fn rejects_kubernetes_service_names() {
        for url in [
            "https://db.default.svc/",
            "https://db.default.svc.cluster.local/",
            "https://kubernetes.default.svc.cluster.local./",
            "https://anything.cluster.local/",
        ] {
            assert!(!ok(url), "{url}");
        }
        assert!(ok("https://svc.example.com/"));
    }

    #[test]
    fn rejects_private_dns_names_and_metadata_hosts() {
        for url in [
            "https://metadata.google.internal/",
            "https://instance-data.ec2.internal/",
            "https://printer.local/",
            "https://db.internal/",
            "https://metadata/",
            "https://intranet/",
            "https://localhost./",
            "https://foo.localhost./",
            "https://router.home.arpa/",
        ] {
            assert!(!ok(url), "{url}");
        }
    }
}
