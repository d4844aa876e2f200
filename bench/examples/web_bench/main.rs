//! The native side of the browser bench (`scripts/web-bench.sh`), which interleaves its rounds
//! with the browser's on the same cores:
//!
//! - `web_bench round`: one round ([`round::round`]) on the native adapter (`WGPU_BACKEND`),
//!   printed as sample lines;
//! - `web_bench table FILE`: the medians of every round's lines in `FILE` (both platforms), as
//!   one markdown table with the adapters.

mod round;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use round::{LAYERS, ROWS, SHAPES, Sample};

/// What a sample lasts: long enough for lavapipe's and SwiftShader's timers, short enough that
/// a round of both platforms takes a minute or two on two shared cores.
const MIN: Duration = Duration::from_millis(100);

/// Marks the adapter's line of a round.
const ADAPTER: &str = "WEBADAPTER";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["round"] => native_round(),
        ["table", file] => {
            print!("{}", table(&std::fs::read_to_string(file)?));
            Ok(())
        }
        _ => Err("usage: web_bench round | web_bench table FILE (see scripts/web-bench.sh)".into()),
    }
}

fn native_round() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = int8_wgpu::Gpu::new()?;
    println!("{ADAPTER} native {} {:?}", gpu.describe(), gpu.capabilities());
    let t0 = Instant::now();
    let now = move || t0.elapsed().as_secs_f64() * 1e3;
    pollster::block_on(round::round(&gpu, MIN, &now, &mut |s| println!("{}", s.line("native"))))?;
    Ok(())
}

/// The median and the range of one case's rounds, with its kernel and timer.
fn cell(samples: &[Sample]) -> Option<(String, f64)> {
    let mut us: Vec<f64> = samples.iter().map(|s| s.us).collect();
    us.sort_by(f64::total_cmp);
    let first = samples.first()?;
    let median = us[us.len() / 2];
    let kernels: Vec<&str> = samples.iter().map(|s| s.kernel.as_str()).collect();
    let kernel = if kernels.iter().all(|k| *k == kernels[0]) { kernels[0].to_string() } else { kernels.join("/") };
    let text = format!("{kernel} | {median:.1} ({:.1}-{:.1}) | {}", us[0], us[us.len() - 1], first.timer);
    Some((text, median))
}

/// The markdown table of every sample line in `text`: per case, each platform's kernel, median
/// µs with the range of its rounds, timer, and browser / native.
fn table(text: &str) -> String {
    let mut adapters: BTreeMap<String, String> = BTreeMap::new();
    let mut by_case: BTreeMap<(String, [usize; 2], usize, String), Vec<Sample>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(at) = line.find(ADAPTER) {
            let rest = line[at + ADAPTER.len()..].trim();
            if let Some((platform, adapter)) = rest.split_once(' ') {
                adapters.insert(platform.into(), adapter.into());
            }
        } else if let Some((platform, s)) = Sample::parse(line) {
            by_case.entry((s.job.clone(), s.shape, s.rows, platform)).or_default().push(s);
        }
    }
    let mut out = String::new();
    for (platform, adapter) in &adapters {
        out += &format!("{platform} adapter: {adapter}\n");
    }
    let rounds = |p: &str| by_case.iter().filter(|(c, _)| c.3 == p).map(|(_, v)| v.len()).max().unwrap_or(0);
    out += &format!("rounds: native {}, browser {}\n\n", rounds("native"), rounds("browser"));
    out += "| job | [out, in] | M | native kernel | native µs median (min-max) | timer | browser kernel | browser µs median (min-max) | timer | browser / native |\n";
    out += "|---|---|---|---|---|---|---|---|---|---|\n";
    let mut jobs: Vec<(&str, usize)> = vec![("quantize", 0)];
    jobs.extend(ROWS.iter().flat_map(|&m| LAYERS.iter().map(move |l| (l.0, m))));
    for shape in SHAPES {
        for &(job, m) in &jobs {
            let get = |p: &str| by_case.get(&(job.to_string(), shape, m, p.to_string())).and_then(|v| cell(v));
            let (native, browser) = (get("native"), get("browser"));
            let ratio = match (&native, &browser) {
                (Some((_, n)), Some((_, b))) => format!("{:.2}x", b / n),
                _ => "-".into(),
            };
            let text = |c: Option<(String, f64)>| c.map_or("- | - | -".into(), |c| c.0);
            let rows = if m == 0 { "-".to_string() } else { m.to_string() };
            out += &format!(
                "| {job} | [{}, {}] | {rows} | {} | {} | {ratio} |\n",
                shape[0],
                shape[1],
                text(native),
                text(browser)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_back_and_make_the_table() {
        let s = Sample {
            job: "W8A16 bf16".into(),
            shape: [1536, 384],
            rows: 8,
            kernel: "rows16/wide".into(),
            timer: "ts".into(),
            us: 12.5,
        };
        let line = format!("  console.log: {}", s.line("browser"));
        assert_eq!(Sample::parse(&line), Some(("browser".into(), s.clone())));
        let n = Sample { us: 5.0, kernel: "rows16".into(), ..s.clone() };
        let text = [
            line,
            n.line("native"),
            format!("{ADAPTER} native llvmpipe (Vulkan)"),
            Sample { us: 30.0, ..s }.line("browser"),
        ]
        .join("\n");
        let t = table(&text);
        assert!(t.contains("native adapter: llvmpipe (Vulkan)"), "{t}");
        assert!(t.contains("rounds: native 1, browser 2"), "{t}");
        assert!(
            t.contains("| W8A16 bf16 | [1536, 384] | 8 | rows16 | 5.0 (5.0-5.0) | ts | rows16/wide | 30.0 (12.5-30.0) | ts | 6.00x |"),
            "{t}"
        );
    }
}
