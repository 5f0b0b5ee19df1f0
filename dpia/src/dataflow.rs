//! The data-flow diagram (SVG), drawn from the same facts as the DPIA: which component holds
//! what, where it runs, and what crosses each arrow (ciphertexts, noised counts, reports).

use passage_config::{Config, MatchLink};

use crate::content::Facts;
use crate::doc::esc;

struct Node {
    key: &'static str,
    x: i32,
    y: i32,
    title: String,
    lines: Vec<String>,
}

const W: i32 = 230;
const H: i32 = 84;

fn node(key: &'static str, x: i32, y: i32, title: &str, lines: &[String]) -> Node {
    Node { key, x, y, title: title.to_owned(), lines: lines.to_vec() }
}

/// Where an arrow leaves or enters a box: the middle of the side facing the other box.
fn anchor(from: &Node, to: &Node) -> (i32, i32) {
    let (cx, cy) = (from.x + W / 2, from.y + H / 2);
    let (tx, ty) = (to.x + W / 2, to.y + H / 2);
    if (tx - cx).abs() * H >= (ty - cy).abs() * W {
        (if tx > cx { from.x + W } else { from.x }, cy)
    } else {
        (cx, if ty > cy { from.y + H } else { from.y })
    }
}

/// The diagram.
pub fn svg(config: &Config, facts: &Facts) -> String {
    let counts_days = config.venues.iter().map(|v| v.retention.counts_days).max().unwrap_or(0);
    let venues = config.venues.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
    let nodes = [
        node("cameras", 40, 90, "Cameras", &[format!("{} camera(s)", facts.cameras), "frames never leave RAM".into()]),
        node(
            "edge",
            40,
            250,
            "Edge agents",
            &["detect, track, count in RAM".into(), format!("DP noise: ε = {} / venue / day", facts.epsilon_per_day)],
        ),
        node(
            "gates",
            40,
            430,
            "Gates + key holder",
            &[format!("{} gate(s); secret key at rest", facts.gates), "encrypt probes, decrypt results".into()],
        ),
        node("phone", 40, 590, "Visitor's phone", &["notice, consent, withdrawal".into(), "denial reasons".into()]),
        node("broker", 400, 340, "MQTT broker", &["carries ciphertexts".into(), "and noised counts".into()]),
        node(
            "matcher",
            760,
            160,
            "Matcher",
            &["ciphertexts only (TFHE)".into(), format!("N = {}, d = {}", facts.fhe.polynomial_size, facts.fhe.dim)],
        ),
        node(
            "analytics",
            760,
            430,
            "Analytics",
            &["DuckDB: noised counts only".into(), format!("retention {counts_days} days")],
        ),
        node("people", 760, 590, "Managers and DPO", &["HTTPS dashboards".into(), "DPO page, sign-off".into()]),
        node("audit", 400, 590, "Audit log", &["hash chain, signed".into(), "pseudonymous entries".into()]),
    ];
    // (from, to, label, arrow at both ends)
    let matching: &[(&str, &str, &str, bool)] = match facts.match_link {
        MatchLink::Mqtt => &[("broker", "matcher", "encrypted probes, templates, results", true)],
        MatchLink::Https => &[
            ("broker", "matcher", "encrypted templates, erasures", true),
            ("gates", "matcher", "encrypted probes, results (HTTPS, mTLS)", true),
        ],
    };
    let edges = [
        ("cameras", "edge", "frames (memory only)", false),
        ("edge", "broker", "noised counts", false),
        ("broker", "analytics", "noised counts", false),
        ("gates", "broker", "ciphertexts", true),
        ("analytics", "people", "reports (HTTPS)", false),
        ("gates", "phone", "denial reason", false),
        ("gates", "audit", "consents, decisions", false),
        ("people", "audit", "sign-off, verification", false),
    ]
    .into_iter()
    .chain(matching.iter().copied());
    let find = |key: &str| nodes.iter().find(|n| n.key == key);
    let mut out = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1030\" height=\"720\" viewBox=\"0 0 1030 720\" font-family=\"sans-serif\" font-size=\"13\" role=\"img\" aria-labelledby=\"title\">\n",
    );
    out.push_str(&format!("<title id=\"title\">Data flow of {}</title>\n", esc(&config.deployment.name)));
    out.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#445\"/></marker></defs>\n");
    out.push_str("<rect x=\"0\" y=\"0\" width=\"1030\" height=\"720\" fill=\"#ffffff\"/>\n");
    out.push_str(&format!(
        "<rect x=\"20\" y=\"60\" width=\"270\" height=\"640\" rx=\"10\" fill=\"#eef6ee\" stroke=\"#7a7\"/>\n<text x=\"30\" y=\"80\" font-weight=\"bold\">Venue premises ({})</text>\n",
        esc(&venues)
    ));
    out.push_str("<rect x=\"740\" y=\"140\" width=\"270\" height=\"390\" rx=\"10\" fill=\"#eef1fa\" stroke=\"#77a\"/>\n<text x=\"750\" y=\"132\" font-weight=\"bold\">Hosting (no keys, no faces)</text>\n");
    for (from, to, label, both) in edges {
        let (Some(a), Some(b)) = (find(from), find(to)) else { continue };
        let (x1, y1) = anchor(a, b);
        let (x2, y2) = anchor(b, a);
        let start = if both { " marker-start=\"url(#arrow)\"" } else { "" };
        out.push_str(&format!(
            "<line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"#445\" stroke-width=\"1.6\"{start} marker-end=\"url(#arrow)\"/>\n"
        ));
        let (mx, my) = ((x1 + x2) / 2, (y1 + y2) / 2 - 6);
        out.push_str(&format!(
            "<text x=\"{mx}\" y=\"{my}\" text-anchor=\"middle\" font-size=\"11.5\" fill=\"#223\" paint-order=\"stroke\" stroke=\"#ffffff\" stroke-width=\"4\">{}</text>\n",
            esc(label)
        ));
    }
    for n in &nodes {
        out.push_str(&format!(
            "<g data-node=\"{}\"><rect x=\"{}\" y=\"{}\" width=\"{W}\" height=\"{H}\" rx=\"8\" fill=\"#ffffff\" stroke=\"#334\" stroke-width=\"1.4\"/>\n<text x=\"{}\" y=\"{}\" font-weight=\"bold\" text-anchor=\"middle\">{}</text>\n",
            n.key,
            n.x,
            n.y,
            n.x + W / 2,
            n.y + 24,
            esc(&n.title)
        ));
        for (i, line) in n.lines.iter().enumerate() {
            out.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#334\">{}</text>\n",
                n.x + W / 2,
                n.y + 46 + 18 * i32::try_from(i).unwrap_or(0),
                esc(line)
            ));
        }
        out.push_str("</g>\n");
    }
    out.push_str(&format!(
        "<text x=\"20\" y=\"30\" font-size=\"17\" font-weight=\"bold\">Data flow: {}</text>\n<text x=\"20\" y=\"50\" fill=\"#445\">Only ciphertexts leave the key holder; only differentially private counts leave the edge.</text>\n",
        esc(&config.deployment.name)
    ));
    out.push_str("</svg>\n");
    out
}
