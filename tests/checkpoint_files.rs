//! Which files a checkpoint folder reads: unlisted safetensors files as warnings, the index and
//! its shards agreeing, files changed after open, and FIFOs or devices refused without blocking.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::TempDir;
use common::model::*;
use int8_wgpu::checkpoint::Checkpoint;
use int8_wgpu::{DType, Error, QuantScheme};
use serde_json::json;

#[test]
fn safetensors_files_the_checkpoint_does_not_read_are_warnings() {
    let inp = TempDir::new("unlisted-in");
    let stray = write_sharded_with_unlisted_files(inp.path());
    let ck = Checkpoint::open(inp.path()).unwrap();
    assert_eq!(ck.unlisted_files(), ["model-00003-of-00003.safetensors", "model.safetensors"]);
    let out = TempDir::new("unlisted-out");
    let r = quantizer(inp.path(), &out.path().join("q"), QuantScheme::default()).run().unwrap();
    assert_eq!(
        r.warnings,
        [
            "`model-00003-of-00003.safetensors` is in the input folder but not in `model.safetensors.index.json`: it \
             was not read and its tensors are not in the output",
            "`model.safetensors` is in the input folder but not in `model.safetensors.index.json`: it was not read and \
             its tensors are not in the output",
        ]
    );
    assert!(r.to_string().contains("\nwarning: `model-00003-of-00003.safetensors` is in the input folder"), "{r}");

    // A single-file folder: any other safetensors file is not read.
    let single = TempDir::new("unlisted-single");
    write_model(single.path(), DType::F32);
    write_file(&single.path().join("adapter.safetensors"), &stray);
    let ck = Checkpoint::open(single.path()).unwrap();
    assert_eq!(ck.unlisted_files(), ["adapter.safetensors"]);
    let r = quantizer(single.path(), &out.path().join("s"), QuantScheme::default()).run().unwrap();
    assert_eq!(
        r.warnings,
        ["`adapter.safetensors` is in the input folder but is not `model.safetensors`: it was not read and its \
          tensors are not in the output"]
    );
    // A single file given by path reads nothing else.
    assert!(Checkpoint::open(single.path().join("model.safetensors")).unwrap().unlisted_files().is_empty());
}

#[test]
fn an_index_with_an_empty_weight_map_is_an_error() {
    let inp = TempDir::new("empty-index");
    write_sharded(inp.path(), DType::F32);
    let index = inp.path().join("model.safetensors.index.json");
    fs::write(&index, r#"{"metadata": {"total_size": 0}, "weight_map": {}}"#).unwrap();
    let e = Checkpoint::open(inp.path()).unwrap_err();
    let Error::Index(msg) = &e else { panic!("{e:?}") };
    assert_eq!(
        msg,
        &format!("`{}` has an empty `weight_map`: it lists no tensor, so there is nothing to read", index.display())
    );
}

#[test]
fn index_and_shards_must_agree() {
    let expect = |dir: &Path, needle: &str| {
        let e = Checkpoint::open(dir).unwrap_err();
        let Error::Index(msg) = &e else { panic!("{e:?}") };
        assert_eq!(msg, needle);
    };
    let d = TempDir::new("index-agree");
    write_sharded(d.path(), DType::F32);
    let index_path = d.path().join("model.safetensors.index.json");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let write_index = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut v = index.clone();
        f(v["weight_map"].as_object_mut().unwrap());
        fs::write(&index_path, v.to_string()).unwrap();
    };
    assert!(Checkpoint::open(d.path()).is_ok());

    write_index(&|m| m["model.position_ids"] = json!("model-00002-of-00002.safetensors"));
    expect(
        d.path(),
        "`model.safetensors.index.json` lists tensor `model.position_ids` in `model-00002-of-00002.safetensors` but \
         it is in `model-00001-of-00002.safetensors`",
    );
    write_index(&|m| drop(m.remove("model.norm.weight")));
    expect(d.path(), "tensor `model.norm.weight` is in a shard but not in `model.safetensors.index.json`");
    write_index(&|m| drop(m.insert("zz.missing".into(), json!("model-00001-of-00002.safetensors"))));
    expect(
        d.path(),
        "`model.safetensors.index.json` lists tensor `zz.missing` in `model-00001-of-00002.safetensors`, which does \
         not hold it; the index and the shards do not match",
    );
    write_index(&|m| drop(m.insert("a.missing".into(), json!("model-00001-of-00002.safetensors"))));
    expect(
        d.path(),
        "`model.safetensors.index.json` lists tensor `a.missing` in `model-00001-of-00002.safetensors`, which does \
         not hold it; the index and the shards do not match",
    );

    // The same tensor in two shards, and twice in one header.
    write_index(&|_| {});
    let shard2 = d.path().join("model-00002-of-00002.safetensors");
    let mut two = model(DType::F32);
    two.retain(|(n, _)| n == "lm_head.weight" || n == "model.norm.weight");
    write_file(&shard2, &two);
    let e = Checkpoint::open(d.path()).unwrap_err();
    assert!(matches!(e, Error::Index(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint error: tensor `model.norm.weight` is in both `{}` and `{}`",
            d.path().join("model-00001-of-00002.safetensors").display(),
            shard2.display()
        )
    );
    let one = d.path().join("one.safetensors");
    let entry = r#""a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}"#;
    fs::write(&one, raw_file(&format!("{{{entry},{}}}", entry.replace("[0,2]", "[2,4]")), &[0; 4])).unwrap();
    let e = Checkpoint::open(&one).unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("checkpoint error: `{}` has a corrupt safetensors header: tensor `a` appears twice", one.display())
    );
}

#[test]
fn files_changed_after_open_are_errors_not_faults() {
    // The size is checked against the header before every read (and a short read is an error,
    // tests/checkpoint_truncation.rs), so a file truncated or extended by another program is an
    // error.
    let inp = TempDir::new("changed");
    let m = write_model(inp.path(), DType::F32);
    let file = inp.path().join("model.safetensors");
    let good = fs::read(&file).unwrap();
    let name = "model.layers.0.attn.q_proj.weight";
    let changed_size = |e: Error| {
        assert!(matches!(&e, Error::Corrupt(m) if m.contains("changed size while it was being read")), "{e:?}");
    };

    // Truncated between open and the first read.
    let ck = Checkpoint::open(inp.path()).unwrap();
    fs::write(&file, &good[..good.len() - 4]).unwrap();
    changed_size(ck.bytes(name).unwrap_err());
    changed_size(ck.tensor_f32(name).unwrap_err());
    fs::write(&file, &good).unwrap();

    // Rewritten with another header of the same size: the file's stamp (size, times) changed.
    let mut other = good.clone();
    let at = other.windows(4).position(|w| w == b"\"F32").unwrap();
    other[at + 1..at + 4].copy_from_slice(b"I32");
    let ck = Checkpoint::open(inp.path()).unwrap();
    fs::write(&file, &other).unwrap();
    let e = ck.bytes(name).unwrap_err();
    assert!(matches!(&e, Error::Corrupt(m) if m.contains("was modified while it was being read")), "{e:?}");
    fs::write(&file, &good).unwrap();

    // Truncated, then extended, after a first read: an error.
    let ck = Checkpoint::open(inp.path()).unwrap();
    let want = &m.iter().find(|(n, _)| n == name).unwrap().1.data;
    assert_eq!(ck.bytes(name).unwrap(), want.as_slice());
    fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(8).unwrap();
    changed_size(ck.bytes(name).unwrap_err());
    changed_size(ck.tensor_f32("model.norm.weight").unwrap_err());
    let mut longer = good.clone();
    longer.extend_from_slice(b"more");
    fs::write(&file, &longer).unwrap();
    changed_size(ck.bytes(name).unwrap_err());
    changed_size(ck.tensor_f32(name).unwrap_err());

    // Replaced by another file (renamed over it) after the first read: the checkpoint keeps
    // reading the file it checked.
    fs::write(&file, &good).unwrap();
    let ck = Checkpoint::open(inp.path()).unwrap();
    assert_eq!(ck.bytes(name).unwrap(), want.as_slice());
    let replacement = inp.path().join("replacement");
    fs::write(&replacement, &other).unwrap();
    fs::rename(&replacement, &file).unwrap();
    assert_eq!(ck.bytes(name).unwrap(), want.as_slice());
    assert_eq!(ck.tensor_f32(name).unwrap(), bytemuck::pod_collect_to_vec::<u8, f32>(want));
}

/// Runs `f` on another thread and fails the test if it takes more than 10 s: a FIFO that is
/// opened for reading blocks until a writer appears. On a timeout, `fifo` is opened for writing
/// so the stuck thread finishes, and the test panics.
#[cfg(unix)]
fn within_timeout<R: Send + 'static>(fifo: &Path, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(r) => r,
        Err(_) => {
            let writer = fifo.to_path_buf();
            std::thread::spawn(move || drop(fs::OpenOptions::new().write(true).open(writer)));
            panic!("still blocked after 10 s on the FIFO `{}`", fifo.display());
        }
    }
}

#[cfg(unix)]
#[test]
fn fifos_and_other_non_regular_files_are_refused_without_blocking() {
    let open_err = |root: PathBuf, fifo: PathBuf| -> Error {
        within_timeout(&fifo, move || Checkpoint::open(root)).expect_err("a FIFO must be refused")
    };
    let expect = |e: Error, path: &Path, kind: &str| {
        let Error::NotRegularFile { path: found, kind: found_kind } = &e else { panic!("{e:?}") };
        assert_eq!((found.as_path(), *found_kind), (path, kind));
        assert_eq!(e.to_string(), format!("`{}` is {kind}, not a regular file", path.display()));
    };

    // The input itself.
    let dir = TempDir::new("fifo-file");
    let fifo = dir.path().join("x.safetensors");
    mkfifo(&fifo);
    expect(open_err(fifo.clone(), fifo.clone()), &fifo, "a FIFO");
    // model.safetensors of a folder.
    let model_fifo = dir.path().join("model.safetensors");
    mkfifo(&model_fifo);
    expect(open_err(dir.path().to_path_buf(), model_fifo.clone()), &model_fifo, "a FIFO");

    // config.json beside a good model.safetensors.
    let d = TempDir::new("fifo-config");
    write_model(d.path(), DType::F32);
    let config = d.path().join("config.json");
    mkfifo(&config);
    expect(open_err(d.path().to_path_buf(), config.clone()), &config, "a FIFO");
    // ... and the quantizer, which opens the checkpoint the same way.
    let out = TempDir::new("fifo-out");
    let (input, dest) = (d.path().to_path_buf(), out.path().join("q"));
    let e = within_timeout(&config, move || quantizer(&input, &dest, QuantScheme::default()).run().unwrap_err());
    expect(e, &config, "a FIFO");

    // A shard, and the index (which a model.safetensors beside it must not hide).
    let s = TempDir::new("fifo-shard");
    write_sharded(s.path(), DType::F32);
    let shard = s.path().join("model-00002-of-00002.safetensors");
    mkfifo(&shard);
    expect(open_err(s.path().to_path_buf(), shard.clone()), &shard, "a FIFO");
    let s = TempDir::new("fifo-index");
    write_sharded(s.path(), DType::F32);
    write_file(&s.path().join("model.safetensors"), &model(DType::F32));
    let index = s.path().join("model.safetensors.index.json");
    mkfifo(&index);
    expect(open_err(s.path().to_path_buf(), index.clone()), &index, "a FIFO");

    // A folder where a shard should be, and a character device as the input.
    let s = TempDir::new("dir-shard");
    write_sharded(s.path(), DType::F32);
    let shard = s.path().join("model-00001-of-00002.safetensors");
    fs::remove_file(&shard).unwrap();
    fs::create_dir(&shard).unwrap();
    expect(Checkpoint::open(s.path()).unwrap_err(), &shard, "a folder");
    expect(Checkpoint::open("/dev/null").unwrap_err(), Path::new("/dev/null"), "a character device");
}
