//! What the director's unit tests share: the two-interface cluster most of
//! them configure, so that a test's config says only what it is about (its
//! services, a capacity, a scheduler) and the interfaces are one text.
//!
//! A macro rather than a function, so that a test's config stays a
//! `const &str` built with `concat!`.

/// The `[[interfaces]]` of the test cluster: `c0` on the client side
/// (02:00:00:00:01:01, 198.51.100.1/24) and `s0` on the server side
/// (02:00:00:00:02:01, 192.0.2.1/24), as TOML text.
///
/// `two_interfaces!(c0 { "…" }, s0 { "…" })` puts other lines in place of
/// each interface's `addresses` line (more addresses, an MTU, none).
macro_rules! two_interfaces {
    () => {
        $crate::test_support::two_interfaces!(
            c0 { r#"addresses = ["198.51.100.1/24"]"# },
            s0 { r#"addresses = ["192.0.2.1/24"]"# }
        )
    };
    (c0 { $c0:literal }, s0 { $s0:literal }) => {
        concat!(
            r#"
[[interfaces]]
name = "c0"
role = "client"
mac = "02:00:00:00:01:01"
"#,
            $c0,
            r#"

[[interfaces]]
name = "s0"
role = "server"
mac = "02:00:00:00:02:01"
"#,
            $s0,
            "\n"
        )
    };
}

pub(crate) use two_interfaces;
