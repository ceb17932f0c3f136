//! `distill cache`: what the machine's cache of fine-tuned teachers and targets holds (id, kind, what,
//! size, last use, the runs that made and took it), and removing entries by id, by disuse
//! (`--older-than 30d`) or all of them. An entry that a run is computing or taking right now is left
//! alone, with a message.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use teacher::cache::{Cache, Entry};

#[derive(clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// List the entries, least recently used first (the default).
    List {
        /// One JSON object per entry (its manifest, folder and size) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove entries: those whose id (or its start) is given, those unused for a while, or all.
    Remove {
        /// Entry ids as `distill cache list` shows them (a unique prefix is enough).
        ids: Vec<String>,
        /// Entries not used for this long: `30d`, `12h`, `90m`, `2w`.
        #[arg(long, value_name = "AGE")]
        older_than: Option<String>,
        /// Every entry.
        #[arg(long)]
        all: bool,
    },
}

pub fn run(a: &CacheArgs) -> Result<()> {
    let Some(cache) = Cache::from_env() else {
        bail!(
            "the cache is off ({}=off) or has no folder (set {} or HOME)",
            teacher::cache::ENV,
            teacher::cache::ENV
        );
    };
    match &a.action {
        None => list(&cache, false),
        Some(Action::List { json }) => list(&cache, *json),
        Some(Action::Remove {
            ids,
            older_than,
            all,
        }) => remove(&cache, ids, older_than.as_deref(), *all),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn list(cache: &Cache, json: bool) -> Result<()> {
    let entries = cache.list();
    if json {
        for e in &entries {
            let mut v = serde_json::to_value(&e.manifest)?;
            v["id"] = e.id().into();
            v["dir"] = e.dir.display().to_string().into();
            v["bytes"] = e.bytes().into();
            println!("{v}");
        }
        return Ok(());
    }
    println!("{}: {} entries", cache.root().display(), entries.len());
    if entries.is_empty() {
        return Ok(());
    }
    println!("| id | kind | what | size | last used | made for | also used by |");
    println!("|---|---|---|---|---|---|---|");
    let t = now();
    for e in &entries {
        let m = &e.manifest;
        println!(
            "| {} | {} | {} | {} | {} ago | {} | {} |",
            e.id(),
            m.kind,
            m.what,
            size(e.bytes()),
            age(t.saturating_sub(m.last_used)),
            m.configs.first().map_or("", String::as_str),
            m.configs.get(1..).unwrap_or_default().join(", ")
        );
    }
    let total: u64 = entries.iter().map(Entry::bytes).sum();
    println!("\n{} in all", size(total));
    Ok(())
}

fn remove(cache: &Cache, ids: &[String], older_than: Option<&str>, all: bool) -> Result<()> {
    if ids.is_empty() && older_than.is_none() && !all {
        bail!("remove: give entry ids, --older-than AGE or --all");
    }
    let max_age = older_than.map(parse_age).transpose()?;
    let entries = cache.list();
    let mut chosen: Vec<&Entry> = Vec::new();
    for id in ids {
        let hits: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.manifest.key.starts_with(id.as_str()))
            .collect();
        match hits.as_slice() {
            [] => bail!("remove: no entry has the id `{id}` (see `distill cache list`)"),
            [one] => chosen.push(one),
            _ => bail!(
                "remove: `{id}` is the start of {} ids; give more of it",
                hits.len()
            ),
        }
    }
    let t = now();
    chosen.extend(
        entries.iter().filter(|e| {
            all || max_age.is_some_and(|a| t.saturating_sub(e.manifest.last_used) >= a)
        }),
    );
    chosen.sort_by(|a, b| a.dir.cmp(&b.dir));
    chosen.dedup_by(|a, b| a.dir == b.dir);
    let mut freed = 0;
    for e in &chosen {
        // A run computing or taking this entry holds its lock: leave it to that run.
        match cache.try_computing(&e.manifest.kind, &e.manifest.key)? {
            None => println!(
                "kept {} ({}): a run is using it now",
                e.id(),
                e.manifest.what
            ),
            Some(_held) => {
                cache.remove_dir(&e.dir)?;
                freed += e.bytes();
                println!(
                    "removed {} ({}, {})",
                    e.id(),
                    e.manifest.what,
                    size(e.bytes())
                );
            }
        }
    }
    println!("{} freed", size(freed));
    Ok(())
}

/// `30d`, `12h`, `90m`, `45s`, `2w` in seconds.
fn parse_age(s: &str) -> Result<u64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .with_context(|| format!("--older-than `{s}`: expected a number and a unit, e.g. 30d"))?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => bail!("--older-than `{s}`: the unit is one of s, m, h, d, w (e.g. 30d)"),
    };
    Ok(n * per)
}

fn size(bytes: u64) -> String {
    let b = bytes as f64;
    match b {
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b => format!("{:.1} kB", b / 1e3),
    }
}

fn age(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{} d", s / 86_400),
        s if s >= 3600 => format!("{} h", s / 3600),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}
