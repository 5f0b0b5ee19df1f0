//! The venue manager's dashboard: one server-rendered page per venue with inline SVG charts
//! (no chart library, nothing from another origin), a time-range picker, export links, and a
//! small same-origin script that refreshes the live occupancy every few seconds.
//!
//! Every chart is an `<svg data-chart=NAME data-points=N data-from=.. data-to=..>` with an
//! `aria-label`; the browser tests (tests/browser/dashboard.mjs) read those attributes.

use std::fmt::Write as _;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use passage_config::Venue;
use serde::Deserialize;

use super::reports::{check_params, live_body, LiveBody, ReportParams};
use super::{escape_html, find_venue, ApiError, AppState};
use crate::compute::{self, ReportKind, ReportRange};
use crate::reports::{frame_rows, CompareRow, DwellRow, FlowRow, ForecastRow, OccupancyRow, PeakRow, ThroughputRow};
use crate::{now_unix, AnalyticsError};

/// The ranges the picker offers: `(value, label, seconds)`.
pub(crate) const RANGES: [(&str, &str, i64); 5] = [
    ("1h", "last hour", 3600),
    ("6h", "last 6 hours", 6 * 3600),
    ("24h", "last 24 hours", 86_400),
    ("7d", "last 7 days", 7 * 86_400),
    ("30d", "last 30 days", 30 * 86_400),
];
/// The range shown when none is picked.
const DEFAULT_RANGE: &str = "6h";

/// Page parameters: a named range, or explicit bounds.
#[derive(Debug, Deserialize)]
pub(crate) struct PageParams {
    range: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
}

/// Everything the page shows, computed in one blocking call.
struct PageData {
    occupancy: Vec<OccupancyRow>,
    forecast: Vec<ForecastRow>,
    throughput: Vec<ThroughputRow>,
    flows: Vec<FlowRow>,
    peaks: Vec<PeakRow>,
    dwell: Vec<DwellRow>,
    compare: Vec<CompareRow>,
}

fn rows<R: serde::de::DeserializeOwned>(
    store: &crate::Store,
    config: &passage_config::Config,
    venue: &Venue,
    kind: ReportKind,
    range: ReportRange,
) -> Result<Vec<R>, AnalyticsError> {
    frame_rows(kind.name(), &compute::compute(store, config, venue, kind, range)?)
}

/// `GET /venues/{venue}`.
pub(crate) async fn venue_page(
    State(state): State<AppState>,
    venue: Result<Path<String>, PathRejection>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(venue) = venue?;
    let Query(params) = params?;
    let venue = find_venue(&state.config, &venue)?.clone();
    let now = now_unix();
    let picked = params.range.as_deref().unwrap_or(DEFAULT_RANGE);
    let (from, to) = match (params.from, params.to) {
        (Some(from), Some(to)) => (from, to),
        _ => {
            let Some((_, _, secs)) = RANGES.iter().find(|(value, _, _)| *value == picked) else {
                return Err(ApiError::BadRequest("unknown `range`".into()));
            };
            // Aligned to the release interval, so a reload shows whole intervals.
            let interval = i64::from(state.config.privacy.interval_secs).max(1);
            let to = now - now.rem_euclid(interval) + interval;
            (to - secs, to)
        }
    };
    let report_params = ReportParams { from: Some(from), to: Some(to), ..ReportParams::default() };
    let checked = check_params(&report_params, now, i64::from(state.config.privacy.interval_secs))?;
    let range = checked.range;
    let config = state.config.clone();
    let v = venue.clone();
    let data = state
        .query(move |store| {
            let (occupancy, forecast) = compute::occupancy_and_forecast(store, &config, &v, range)?;
            Ok(PageData {
                occupancy: frame_rows(ReportKind::Occupancy.name(), &occupancy)?,
                forecast: frame_rows(ReportKind::Forecast.name(), &forecast)?,
                throughput: rows(store, &config, &v, ReportKind::Throughput, range)?,
                flows: rows(store, &config, &v, ReportKind::Flows, range)?,
                peaks: rows(store, &config, &v, ReportKind::Peaks, range)?,
                dwell: rows(store, &config, &v, ReportKind::Dwell, range)?,
                compare: rows(store, &config, &v, ReportKind::Compare, range)?,
            })
        })
        .await?;
    let live = live_body(&state, &venue, now).await?;
    let page = render_page(&state.config.deployment.name, &venue, picked, range, &data, &live, now);
    Ok(super::html_page(
        axum::http::StatusCode::OK,
        page,
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; img-src 'self'",
    ))
}

/// `GET /assets/dashboard.js`: refreshes the live occupancy chart from `/api/v1/.../live`.
pub(crate) async fn script() -> Response {
    let mut response = SCRIPT.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    response
}

const SCRIPT: &str = r#"// Passage dashboard: live occupancy refresh (same origin only).
(function () {
  const chart = document.querySelector('svg[data-chart="zone-occupancy"]');
  if (!chart) return;
  const venue = chart.getAttribute('data-venue');
  async function refresh() {
    try {
      const response = await fetch('/api/v1/venues/' + encodeURIComponent(venue) + '/live', { cache: 'no-store' });
      if (!response.ok) return;
      const live = await response.json();
      let points = 0;
      for (const zone of live.zones) {
        const bar = chart.querySelector('rect[data-zone="' + CSS.escape(zone.zone) + '"]');
        const label = chart.querySelector('text[data-zone="' + CSS.escape(zone.zone) + '"]');
        if (!bar || !label) continue;
        const max = Number(bar.getAttribute('data-full'));
        const load = zone.load === null ? 0 : Math.max(0, Math.min(zone.load, 1.2));
        bar.setAttribute('width', (load / 1.2 * max).toFixed(1));
        bar.setAttribute('class', zone.alert ? 'bar alert' : 'bar');
        label.textContent = zone.value === null
          ? 'no recent data'
          : zone.value + ' ± ' + zone.std.toFixed(1) + ' of ' + zone.capacity + (zone.alert ? ' — capacity alert' : '');
        if (zone.value !== null) points += 1;
      }
      chart.setAttribute('data-points', String(points));
      chart.setAttribute('data-to', String(live.at));
    } catch (e) {
      // Offline for a moment: the next refresh tries again.
    }
  }
  setInterval(refresh, 5000);
})();
"#;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1a1a1a;max-width:64rem}\
h1{margin:0 0 .2rem;font-size:1.6rem}.meta{color:#555;margin-top:0}section{margin:1.6rem 0}\
h2{font-size:1.2rem;margin-bottom:.4rem}form{display:flex;gap:.6rem;align-items:center;flex-wrap:wrap}\
select,button{font-size:1rem;padding:.2rem .5rem}table{border-collapse:collapse}\
th,td{padding:.25rem .7rem;border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left}\
.flag{color:#8a4b00}.exports a{margin-right:.8rem}svg text{font-size:11px;fill:#444}\
rect.bar{fill:#2a7a55}rect.bar.alert{fill:#b3261e}rect.in{fill:#2a7a55}rect.out{fill:#b35a1e}\
path.band{fill:#2a7a55;fill-opacity:.18}path.venue{stroke:#2a7a55;stroke-width:2;fill:none}\
path.forecast{stroke:#2a7a55;stroke-dasharray:4 3;stroke-width:2;fill:none}\
path.zone{stroke-width:1.5;fill:none}path.link{fill:none;stroke:#3b6ea8;stroke-opacity:.45}\
.legend span{margin-right:1rem}svg{max-width:100%;height:auto}circle.venue{fill:#2a7a55}footer{color:#666;font-size:.85em;margin-top:2rem}";

const ZONE_COLOURS: [&str; 6] = ["#3b6ea8", "#8a4b9e", "#b35a1e", "#5a8a1e", "#1e8a8a", "#8a1e4b"];

pub(crate) fn clock(unix: i64) -> String {
    let of_day = unix.rem_euclid(86_400);
    format!("{:02}:{:02}", of_day / 3600, of_day % 3600 / 60)
}

/// `YYYY-MM-DD` (UTC) of a Unix time (civil-from-days).
pub(crate) fn date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn svg_open(name: &str, points: usize, range: ReportRange, label: &str, height: f64, extra: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" \
         role=\"img\" aria-label=\"{}\" data-chart=\"{name}\" \
         data-points=\"{points}\" data-from=\"{}\" data-to=\"{}\"{extra}>",
        escape_html(label),
        range.from,
        range.to,
    )
}

const WIDTH: f64 = 720.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;

/// Maps time to x over the range.
fn x_of(range: ReportRange) -> impl Fn(i64) -> f64 {
    let span = (range.to - range.from).max(1) as f64;
    move |t| LEFT + ((t - range.from) as f64 / span * (WIDTH - LEFT - RIGHT)).clamp(0.0, WIDTH - LEFT - RIGHT)
}

fn axis(svg: &mut String, range: ReportRange, top: f64, bottom: f64, high: f64, low: f64) {
    let x = x_of(range);
    let y = |v: f64| top + (high - v) / (high - low).max(1e-9) * (bottom - top);
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
         <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{high:.0}</text>\
         <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{low:.0}</text>",
        WIDTH - RIGHT,
        y(0.0),
        y(0.0),
        LEFT - 4.0,
        top + 4.0,
        LEFT - 4.0,
        bottom,
    );
    let long = range.to - range.from > 2 * 86_400;
    for (t, anchor) in [(range.from, "start"), (range.from + (range.to - range.from) / 2, "middle"), (range.to, "end")]
    {
        let label = if long { date(t) } else { clock(t) };
        let _ =
            write!(svg, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{label}</text>", x(t), bottom + 14.0);
    }
}

fn path(points: &[(f64, f64)]) -> String {
    let mut d = String::new();
    for (i, (x, y)) in points.iter().enumerate() {
        let _ = write!(d, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" });
    }
    d
}

/// Live occupancy per zone against capacity: horizontal bars (the script refreshes them).
fn zone_chart(live: &LiveBody, range: ReportRange) -> String {
    let bar_height = 26.0;
    let height = 20.0 + bar_height * live.zones.len().max(1) as f64;
    let full = WIDTH - 200.0 - RIGHT;
    let points = live.zones.iter().filter(|z| z.value.is_some()).count();
    let mut svg = svg_open(
        "zone-occupancy",
        points,
        ReportRange { from: live.at - 180, to: live.at, bucket: range.bucket },
        "Live occupancy per zone against capacity",
        height,
        &format!(" data-venue=\"{}\"", escape_html(&live.venue)),
    );
    // Full capacity at 1/1.2 of the bar width.
    let cap_x = 120.0 + full / 1.2;
    let _ = write!(
        svg,
        "<line x1=\"{cap_x:.1}\" x2=\"{cap_x:.1}\" y1=\"4\" y2=\"{:.1}\" stroke=\"#b3261e\" stroke-dasharray=\"3 2\"/>\
         <text x=\"{cap_x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">capacity</text>",
        height - 12.0,
        height - 2.0,
    );
    for (i, zone) in live.zones.iter().enumerate() {
        let y = 6.0 + i as f64 * bar_height;
        let load = zone.load.unwrap_or(0.0).clamp(0.0, 1.2);
        let class = if zone.alert { "bar alert" } else { "bar" };
        let text = match (zone.value, zone.std) {
            (Some(value), Some(std)) => {
                format!("{value} ± {std:.1} of {}{}", zone.capacity, if zone.alert { " — capacity alert" } else { "" })
            }
            _ => "no recent data".to_owned(),
        };
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\">{}</text><rect class=\"{class}\" data-zone=\"{}\" data-full=\"{full:.1}\" \
             x=\"120\" y=\"{y:.1}\" height=\"{:.1}\" width=\"{:.1}\"/><text data-zone=\"{}\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y + 15.0,
            escape_html(&zone.name),
            escape_html(&zone.zone),
            bar_height - 8.0,
            load / 1.2 * full,
            escape_html(&zone.zone),
            120.0 + full + 6.0 - 80.0,
            y + 15.0,
            escape_html(&text),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Occupancy over time: the venue with its ±2σ band and forecast, and each zone.
fn occupancy_chart(occupancy: &[OccupancyRow], forecast: &[ForecastRow], range: ReportRange) -> String {
    let (top, bottom) = (10.0, 190.0);
    let venue: Vec<&OccupancyRow> = occupancy.iter().filter(|r| r.zone.is_none()).collect();
    let mut zones: Vec<&str> = occupancy.iter().filter_map(|r| r.zone.as_deref()).collect();
    zones.dedup();
    let extended =
        ReportRange { to: forecast.last().map_or(range.to, |f| f.start + range.bucket).max(range.to), ..range };
    let values = occupancy
        .iter()
        .flat_map(|r| [r.value + 2.0 * r.std, r.value - 2.0 * r.std])
        .chain(forecast.iter().flat_map(|f| [f.value + 2.0 * f.std, f.value - 2.0 * f.std]))
        .filter(|v| v.is_finite());
    let high = values.clone().fold(1.0f64, f64::max).ceil();
    let low = values.fold(0.0f64, f64::min).floor();
    let y = |v: f64| top + (high - v) / (high - low).max(1e-9) * (bottom - top);
    let x = x_of(extended);
    let mid = |start: i64| x(start + range.bucket / 2);
    let mut svg = svg_open(
        "occupancy-series",
        occupancy.len(),
        range,
        "Occupancy over time: the venue with a band of two noise standard deviations and its forecast, and each zone",
        bottom + 22.0,
        "",
    );
    axis(&mut svg, extended, top, bottom, high, low);
    if !venue.is_empty() {
        let upper: Vec<(f64, f64)> = venue.iter().map(|r| (mid(r.start), y(r.value + 2.0 * r.std))).collect();
        let lower: Vec<(f64, f64)> = venue.iter().rev().map(|r| (mid(r.start), y(r.value - 2.0 * r.std))).collect();
        let mut band = path(&upper);
        band.push_str(&path(&lower).replacen('M', " L", 1));
        let _ = write!(svg, "<path class=\"band\" d=\"{band} Z\"/>");
        let line: Vec<(f64, f64)> = venue.iter().map(|r| (mid(r.start), y(r.value))).collect();
        let _ = write!(svg, "<path class=\"venue\" d=\"{}\"><title>venue occupancy</title></path>", path(&line));
        for row in &venue {
            let _ = write!(
                svg,
                "<circle class=\"venue\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{} venue {:.0} ± {:.1}</title></circle>",
                mid(row.start),
                y(row.value),
                clock(row.start),
                row.value,
                row.std
            );
        }
        if let (Some(last), false) = (venue.last(), forecast.is_empty()) {
            let mut ahead = vec![(mid(last.start), y(last.value))];
            ahead.extend(forecast.iter().map(|f| (mid(f.start), y(f.value))));
            let _ = write!(svg, "<path class=\"forecast\" d=\"{}\"><title>forecast</title></path>", path(&ahead));
        }
    }
    for (i, zone) in zones.iter().enumerate() {
        let line: Vec<(f64, f64)> =
            occupancy.iter().filter(|r| r.zone.as_deref() == Some(zone)).map(|r| (mid(r.start), y(r.value))).collect();
        let colour = ZONE_COLOURS[i % ZONE_COLOURS.len()];
        let _ = write!(
            svg,
            "<path class=\"zone\" stroke=\"{colour}\" d=\"{}\"><title>{}</title></path>",
            path(&line),
            escape_html(zone)
        );
        for (cx, cy) in &line {
            let _ = write!(svg, "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"2.5\" fill=\"{colour}\"/>");
        }
        let legend_x = LEFT + 8.0 + i as f64 * 110.0;
        let _ = write!(
            svg,
            "<rect x=\"{legend_x:.1}\" y=\"{top:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            legend_x + 14.0,
            top + 9.0,
            escape_html(zone)
        );
    }
    if occupancy.is_empty() {
        let _ =
            write!(svg, "<text x=\"{:.1}\" y=\"100\" text-anchor=\"middle\">no data in this range</text>", WIDTH / 2.0);
    }
    svg.push_str("</svg>");
    svg
}

/// Entries (up) and exits (down) per bucket, summed over the gates, one colour per side.
fn throughput_chart(rows: &[ThroughputRow], range: ReportRange) -> String {
    let (top, bottom) = (10.0, 170.0);
    let mut buckets: Vec<(i64, i64, i64)> = Vec::new();
    for row in rows {
        match buckets.last_mut() {
            Some(last) if last.0 == row.start => {
                last.1 += row.entries;
                last.2 += row.exits;
            }
            _ => buckets.push((row.start, row.entries, row.exits)),
        }
    }
    let high = buckets.iter().map(|b| b.1.max(0)).max().unwrap_or(0).max(1) as f64;
    let low = -(buckets.iter().map(|b| b.2.max(0)).max().unwrap_or(0).max(1) as f64);
    let y = |v: f64| top + (high - v) / (high - low) * (bottom - top);
    let x = x_of(range);
    let mut svg = svg_open(
        "gate-throughput",
        buckets.len(),
        range,
        "Gate throughput: entries above the axis, exits below, per bucket",
        bottom + 22.0,
        "",
    );
    axis(&mut svg, range, top, bottom, high, low);
    for (start, entries, exits) in &buckets {
        let left = x(*start);
        let width = (x(start + range.bucket) - left - 1.0).max(1.0);
        let (e, o) = ((*entries).max(0) as f64, (*exits).max(0) as f64);
        let _ = write!(
            svg,
            "<rect class=\"in\" x=\"{left:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\"><title>{} entries {entries}</title></rect>\
             <rect class=\"out\" x=\"{left:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\"><title>{} exits {exits}</title></rect>",
            y(e),
            y(0.0) - y(e),
            clock(*start),
            y(0.0),
            y(-o) - y(0.0),
            clock(*start),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Flows between zones as a two-column Sankey: zones left (from) and right (to), links as
/// wide as their (positive) noised value.
fn flow_chart(rows: &[FlowRow], range: ReportRange) -> String {
    let mut zones: Vec<&str> = rows.iter().flat_map(|r| [r.from.as_str(), r.to.as_str()]).collect();
    zones.sort_unstable();
    zones.dedup();
    let links: Vec<&FlowRow> = rows.iter().filter(|r| r.value > 0).collect();
    let row_height = 40.0;
    let height = 20.0 + row_height * zones.len().max(1) as f64;
    let max = links.iter().map(|r| r.value).max().unwrap_or(1).max(1) as f64;
    let mut svg = svg_open(
        "flows",
        links.len(),
        range,
        "Flows between zones: each band goes from the zone left to the zone entered, as wide as the number of moves",
        height,
        "",
    );
    let y = |zone: &str| 20.0 + zones.iter().position(|z| *z == zone).unwrap_or(0) as f64 * row_height;
    let (left, right) = (150.0, WIDTH - 150.0);
    for (i, zone) in zones.iter().enumerate() {
        let colour = ZONE_COLOURS[i % ZONE_COLOURS.len()];
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"24\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{right:.1}\" y=\"{:.1}\" width=\"8\" height=\"24\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            left - 8.0,
            y(zone) - 12.0,
            left - 12.0,
            y(zone) + 4.0,
            escape_html(zone),
            y(zone) - 12.0,
            right + 12.0,
            y(zone) + 4.0,
            escape_html(zone),
        );
    }
    for link in &links {
        let width = (link.value as f64 / max * 20.0).max(1.0);
        let (y0, y1) = (y(&link.from), y(&link.to));
        let mid = (left + right) / 2.0;
        let _ = write!(
            svg,
            "<path class=\"link\" stroke-width=\"{width:.1}\" d=\"M{left:.1},{y0:.1} C{mid:.1},{y0:.1} {mid:.1},{y1:.1} {right:.1},{y1:.1}\">\
             <title>{} → {}: {} ± {:.1}{}</title></path>",
            escape_html(&link.from),
            escape_html(&link.to),
            link.value,
            link.std,
            if link.flagged { " (within the noise)" } else { "" },
        );
    }
    if links.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"30\" text-anchor=\"middle\">no moves between zones in this range</text>",
            WIDTH / 2.0
        );
    }
    svg.push_str("</svg>");
    svg
}

fn figure(value: impl std::fmt::Display, std: f64, flagged: bool) -> String {
    if flagged {
        format!("<span class=\"flag\" title=\"within the noise: read with care\">{value} ± {std:.1}*</span>")
    } else {
        format!("{value} ± {std:.1}")
    }
}

fn render_page(
    deployment: &str,
    venue: &Venue,
    picked: &str,
    range: ReportRange,
    data: &PageData,
    live: &LiveBody,
    now: i64,
) -> String {
    let mut page = String::with_capacity(32 * 1024);
    let name = escape_html(&venue.name);
    let id = escape_html(venue.id.as_str());
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{name} — Passage analytics</title><style>{STYLE}</style>\
         <script src=\"/assets/dashboard.js\" defer></script></head><body>\
         <h1>{name}</h1><p class=\"meta\">{} · {} {} to {} {} UTC · buckets of {} s · updated {} UTC · \
         every figure is differentially private; ± is the standard deviation of its noise and * marks \
         figures within the noise</p>",
        escape_html(deployment),
        date(range.from),
        clock(range.from),
        date(range.to),
        clock(range.to),
        range.bucket,
        clock(now),
    );
    page.push_str("<form id=\"range\" method=\"get\"><label for=\"range-select\">Time range</label><select id=\"range-select\" name=\"range\">");
    for (value, label, _) in RANGES {
        let selected = if value == picked { " selected" } else { "" };
        let _ = write!(page, "<option value=\"{value}\"{selected}>{label}</option>");
    }
    page.push_str("</select><button type=\"submit\">Show</button></form>");

    let q = format!("from={}&amp;to={}", range.from, range.to);
    let _ = write!(page, "<p class=\"exports\">Export: ");
    for kind in ReportKind::ALL {
        let _ = write!(
            page,
            "<a data-export=\"csv\" href=\"/api/v1/venues/{id}/reports/{}?{q}&amp;bucket={}&amp;format=csv\">{} (CSV)</a>",
            kind.name(),
            range.bucket,
            kind.name(),
        );
    }
    let _ = write!(
        page,
        "<a data-export=\"parquet\" href=\"/api/v1/venues/{id}/export.parquet?{q}\">noised counts (Parquet)</a></p>"
    );

    let _ = write!(page, "<section><h2>Live occupancy</h2>{}</section>", zone_chart(live, range));
    let _ = write!(
        page,
        "<section><h2>Occupancy</h2><p class=\"legend\"><span>— venue (band: ±2σ noise)</span><span>- - forecast</span><span>coloured: zones</span></p>{}</section>",
        occupancy_chart(&data.occupancy, &data.forecast, range)
    );
    let _ = write!(page, "<section><h2>Gate throughput</h2>{}", throughput_chart(&data.throughput, range));
    let mut per_line: Vec<(String, i64, f64, i64, f64)> = Vec::new();
    for row in &data.throughput {
        match per_line.iter_mut().find(|l| l.0 == row.line) {
            Some(line) => {
                line.1 += row.entries;
                line.2 += row.entries_std.powi(2);
                line.3 += row.exits;
                line.4 += row.exits_std.powi(2);
            }
            None => per_line.push((
                row.line.clone(),
                row.entries,
                row.entries_std.powi(2),
                row.exits,
                row.exits_std.powi(2),
            )),
        }
    }
    page.push_str("<table><caption>Entries and exits per gate over the range</caption><thead><tr><th scope=\"col\">Gate</th><th scope=\"col\">Entries</th><th scope=\"col\">Exits</th></tr></thead><tbody>");
    for (line, entries, entries_var, exits, exits_var) in &per_line {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(line),
            figure(entries, entries_var.sqrt(), false),
            figure(exits, exits_var.sqrt(), false),
        );
    }
    page.push_str("</tbody></table></section>");
    let _ = write!(page, "<section><h2>Flows between zones</h2>{}</section>", flow_chart(&data.flows, range));

    page.push_str("<section><h2>Compared with earlier</h2><table><thead><tr><th scope=\"col\">Period</th><th scope=\"col\">Entries</th><th scope=\"col\">Exits</th><th scope=\"col\">Change of entries</th></tr></thead><tbody>");
    for row in &data.compare {
        let change = row.entries_change_pct.map_or("—".to_owned(), |pct| format!("{pct:+.0} %"));
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{change}</td></tr>",
            row.period.replace('_', " "),
            figure(row.entries, row.entries_std, row.flagged),
            figure(row.exits, row.exits_std, false),
        );
    }
    page.push_str("</tbody></table></section>");

    page.push_str("<section><h2>Peak hours (UTC)</h2><table><thead><tr><th scope=\"col\">Hour</th><th scope=\"col\">Mean entries</th><th scope=\"col\">Days</th></tr></thead><tbody>");
    for row in data.peaks.iter().take(5) {
        let _ = write!(
            page,
            "<tr><td>{:02}:00</td><td>{}</td><td>{}</td></tr>",
            row.hour,
            figure(format!("{:.1}", row.mean_entries), row.std, row.flagged),
            row.days
        );
    }
    page.push_str("</tbody></table></section>");

    page.push_str("<section><h2>Dwell time</h2><table><thead><tr><th scope=\"col\">Zone</th><th scope=\"col\">Stayed at least</th><th scope=\"col\">Stays</th><th scope=\"col\">Share</th></tr></thead><tbody>");
    for row in &data.dwell {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{} min</td><td>{}</td><td>{:.0} %</td></tr>",
            escape_html(&row.zone),
            row.at_least_secs / 60,
            figure(row.value, row.std, row.flagged),
            row.share * 100.0
        );
    }
    page.push_str("</tbody></table></section>");
    let _ = write!(
        page,
        "<footer>Passage analytics · <a href=\"/\">all venues</a> · <a href=\"/api/v1/openapi.json\">API (OpenAPI)</a></footer></body></html>"
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_798_675_200), "2026-12-31");
        assert_eq!(clock(3600 + 61), "01:01");
    }

    #[test]
    fn charts_carry_their_test_attributes_and_escape_names() {
        let range = ReportRange { from: 0, to: 3600, bucket: 60 };
        let flows =
            vec![FlowRow { from: "a<b".into(), to: "c".into(), value: 5, std: 1.0, flagged: false, share: 1.0 }];
        let svg = flow_chart(&flows, range);
        assert!(svg.contains("data-chart=\"flows\" data-points=\"1\" data-from=\"0\" data-to=\"3600\""), "{svg}");
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        let empty = throughput_chart(&[], range);
        assert!(empty.contains("data-points=\"0\""));
    }
}
