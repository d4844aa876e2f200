//! Imports point down the layers of ARCHITECTURE.md: host types <- reference <- gpu <- layer <-
//! checkpoint <- quantizer <- CLI. A file that imports from a layer above its own fails here,
//! whether through a module path (`crate::checkpoint::...`) or a crate-root re-export
//! (`crate::Checkpoint`, resolved through `pub use` in lib.rs).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The layer of a top-level module of the crate; `None` for lib.rs itself.
fn layer_of_module(module: &str) -> Option<usize> {
    Some(match module {
        "dtype" | "scheme" | "error" | "quantized" | "check" | "activation" | "regular_file" => 0,
        "reference" => 1,
        "gpu" => 2,
        "layer" => 3,
        "checkpoint" | "gguf" => 4,
        "quantizer" => 5,
        _ => return None,
    })
}

/// The top-level module a source file belongs to (`src/gpu/cache.rs` -> `gpu`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Crate-root names and the module each is re-exported from (`pub use gpu::{Gpu, ...}`).
fn root_reexports(lib: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for line in lib.lines().map(str::trim).filter(|l| l.starts_with("pub use ")) {
        let rest = line.trim_start_matches("pub use ").trim_end_matches(';');
        let Some((module, items)) = rest.split_once("::") else { continue };
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let name = item.rsplit("::").next().unwrap_or(item);
            map.insert(name.to_string(), module.to_string());
        }
    }
    map
}

/// The modules a line of code imports from: `crate::module::...` paths and crate-root names.
fn imported_modules(code: &str, reexports: &HashMap<String, String>) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{A, b::C, ...}`: each entry is a root name or a module path.
            let end = group.find('}').unwrap_or(group.len());
            for entry in group[..end].split(',').map(str::trim) {
                let head: String = entry.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                found.push(reexports.get(&head).cloned().unwrap_or(head));
            }
        } else {
            let head: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.push(reexports.get(&head).cloned().unwrap_or(head));
        }
    }
    found
}

#[test]
fn imports_point_down_the_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let reexports = root_reexports(&fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(reexports.contains_key("Gpu") && reexports.contains_key("QuantizedLinear"), "{reexports:?}");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        let Some(own) = layer_of_module(&module) else { continue };
        let text = fs::read_to_string(file).unwrap();
        let mut in_tests = false;
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            // Unit tests may reach anywhere; comments and doc links are not imports.
            if code.starts_with("#[cfg(test)]") {
                in_tests = true;
            }
            if in_tests || code.starts_with("//") {
                continue;
            }
            for m in imported_modules(code, &reexports) {
                if layer_of_module(&m).is_some_and(|l| l > own) {
                    wrong.push(format!("{}:{}: `{module}` imports from `{m}`: {}", file.display(), i + 1, code));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports from a higher layer:\n{}", wrong.join("\n"));
}

/// Every top-level module has a layer (a module left out of `layer_of_module` would go
/// unchecked); `lib.rs` and the CLI in `bin/` stand outside the layers.
#[test]
fn every_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut unlisted = Vec::new();
    for e in fs::read_dir(&src).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_string();
        if name != "lib" && name != "bin" && layer_of_module(&name).is_none() {
            unlisted.push(name);
        }
    }
    assert!(unlisted.is_empty(), "modules with no layer in tests/layering.rs and ARCHITECTURE.md: {unlisted:?}");
}

#[test]
fn the_check_sees_an_upward_import() {
    let reexports = HashMap::from([("Checkpoint".to_string(), "checkpoint".to_string())]);
    assert_eq!(imported_modules("use crate::{Checkpoint, gpu::Gpu};", &reexports), ["checkpoint", "gpu"]);
    assert_eq!(imported_modules("let q = crate::quantizer::Quantizer::new(a, b);", &reexports), ["quantizer"]);
}

/// The modules of `src/gpu` that `code` names through `crate::gpu::...` paths, by their path
/// below `gpu` (`linear::plan`), expanding `{...}` groups; `known` are the modules that exist.
fn gpu_modules_named(code: &str, known: &[String]) -> Vec<String> {
    fn paths(prefix: &str, rest: &str, out: &mut Vec<String>) {
        let rest = rest.trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => return paths(prefix, &group[start..i], out),
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        paths(prefix, &group[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            let head: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let path = if prefix.is_empty() { head.clone() } else { format!("{prefix}::{head}") };
            match rest[head.len()..].strip_prefix("::") {
                Some(tail) if !head.is_empty() => paths(&path, tail, out),
                _ => out.push(path),
            }
        }
    }
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::gpu::") {
        let mut named = Vec::new();
        paths("", &code[i + "crate::gpu::".len()..], &mut named);
        for path in named {
            // The longest prefix that is a module: `linear::plan::Bound` -> `linear::plan`.
            let parts: Vec<&str> = path.split("::").collect();
            let m = (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| known.contains(m));
            if let Some(m) = m.filter(|m| !found.contains(m)) {
                found.push(m);
            }
        }
    }
    found
}

/// No two modules of `src/gpu` import each other, directly or in a loop (a module's own
/// parents, whose re-exports it may name, aside; unit tests may reach anywhere).
#[test]
fn gpu_modules_import_no_circles() {
    let gpu = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gpu");
    let mut files = Vec::new();
    rust_files(&gpu, &mut files);
    let module = |f: &Path| {
        let rel = f.strip_prefix(&gpu).unwrap().with_extension("");
        let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        let parts = if parts.last().is_some_and(|p| p == "mod") { &parts[..parts.len() - 1] } else { &parts[..] };
        parts.join("::")
    };
    let known: Vec<String> = files.iter().map(|f| module(f)).collect();
    let mut edges: HashMap<String, Vec<String>> = HashMap::new();
    for f in &files {
        let (from, text) = (module(f), fs::read_to_string(f).unwrap());
        let code: String = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap()
            .lines()
            .map(|l| l.split("//").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        for to in gpu_modules_named(&code, &known) {
            let parent = from == to || from.starts_with(&format!("{to}::")) || to.is_empty();
            if !parent && !edges.get(&from).is_some_and(|e| e.contains(&to)) {
                edges.entry(from.clone()).or_default().push(to);
            }
        }
    }
    // A depth-first search from every module; a module met again on the current path closes a loop.
    fn visit(m: &str, edges: &HashMap<String, Vec<String>>, path: &mut Vec<String>, done: &mut Vec<String>) {
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("src/gpu modules import each other in a loop: {} -> {m}", path[i..].join(" -> "));
        }
        if done.iter().any(|d| d == m) {
            return;
        }
        path.push(m.to_string());
        for to in edges.get(m).into_iter().flatten() {
            visit(to, edges, path, done);
        }
        path.pop();
        done.push(m.to_string());
    }
    let mut done = Vec::new();
    for m in &known {
        visit(m, &edges, &mut Vec::new(), &mut done);
    }
    assert!(edges.get("linear::plan").is_some_and(|e| e.contains(&"linear::choose".to_string())), "{edges:?}");
}

#[test]
fn the_circle_check_reads_groups_and_paths() {
    let known = ["params", "linear", "linear::plan", "shaders"].map(String::from);
    let code =
        "use crate::gpu::{Gpu, linear::plan::{Bound, LinearPlan}, params};\nlet x = crate::gpu::shaders::Kernel::Gemm;";
    assert_eq!(gpu_modules_named(code, &known), ["linear::plan", "params", "shaders"].map(String::from));
}
