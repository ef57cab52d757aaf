"""Build the training corpus from audio in Debian 12 packages (run by scripts/make_corpus.sh).

The project's own copy of the corpus builder (speech, music and sound effects
from free-licensed packages; see the script for options). Audio lands in
``OUT/train/KIND/PACKAGE/*.wav``; the held-out split is by source package and
lives in code: `codec.train.split.VALID_PACKAGES`, which also sets the
``split`` column of ``OUT/manifest.csv`` ("train" or "valid"). The file
layout is the one `codec.train.split.list_clips` reads.

Pure parts (classification rules, source selection, per-package caps, cutting
into clips, the split) are functions that tests call without downloading.
Run with Debian's python3 (numpy, soundfile, sox, ffmpeg), not the venv: the
script imports only this module and `codec.train.split`.
"""
# Kept close to the first version (../shared/data/make_corpus.sh) so the corpus is the same.
# ruff: noqa: E401, E501, E701, E702, E741

from __future__ import annotations

import argparse, csv, hashlib, math, os, re, shutil, subprocess, sys, time, zipfile
from multiprocessing import Pool

from codec.train.split import VALID_PACKAGES, split_of

AUDIO_EXT = ('.ogg', '.oga', '.wav', '.flac', '.aiff', '.aif', '.mp3', '.opus', '.gsm', '.xm')
T0 = time.time()
OUT = CACHE = ''
SR, CH, CLIP, JOBS = 24000, 1, 30.0, 1
CAPS = {'music': 20.0, 'sfx': 15.0, 'speech': 0.0}
failed: list[str] = []


def log(*a): print('[make_corpus %6.1fs]' % (time.time() - T0), *a, flush=True)


# ---------------------------------------------------------------- classification rules
# each rule: path (lower-case, relative to the extracted package root) -> (kind, lang) or None
def r_tuxpaint_stamps(p):
    m = re.search(r'_desc(?:_([a-z]{2,3}(?:_[a-z]{2})?))?\.(ogg|wav)$', p)
    return ('speech', m.group(1) or 'en') if m else ('sfx', '')
def r_fillets(lang):
    def f(p):
        if re.search(r'/sound/.+/%s/' % lang, p): return ('speech', lang)
        if lang == 'en' and '/music/' in p: return ('music', '')
        if lang == 'en' and '/sound/' in p and not re.search(r'/sound/.+/(cs|nl|en)/', p): return ('sfx', '')
        return None
    return f
def r_klettres(p):
    m = re.search(r'/klettres/([^/]+)/', p)
    return ('speech', m.group(1)) if m else None
def r_dirs(music=('/music',), sfx=('/sound', '/snd', '/samples', '/sounds'), speech=()):
    def f(p):
        for s in speech:
            if s in p: return ('speech', 'en')
        for s in music:
            if s in p: return ('music', '')
        for s in sfx:
            if s in p: return ('sfx', '')
        return None
    return f
def r_all(kind, lang=''):
    return lambda p: (kind, lang)
def r_asterisk(lang):
    return lambda p: None if '/silence/' in p else ('speech', lang)
def r_openarena(p):
    if 'festivox' in p: return None          # festival TTS, not a human voice
    return ('sfx', '')
def r_frozen(p): return ('music', '') if 'zik' in p else ('sfx', '')
def r_lomiri(p): return ('music', '') if '/ringtones/' in p else ('sfx', '')
def r_scratch(p):
    if '/music loops/' in p or '/vocals/' in p: return ('music', '')
    return ('sfx', '')

# (package or alternatives, split, license, rule, caps {kind: (pkg_cap_min or None, per_file_cap_s or None)})
SOURCES = [
  # ---- TRAIN: speech (wideband, human voices)
  ('tuxpaint-stamps-default', 'train', 'GPL-2', r_tuxpaint_stamps, {}),
  ('fillets-ng-data-cs', 'train', 'GPL-2+', r_fillets('cs'), {}),
  ('klettres-data', 'train', 'GPL-2+', r_klettres, {}),
  # ---- TRAIN: music (+ their sfx)
  (('wesnoth-1.16-music', 'wesnoth-1.18-music'), 'train', 'GPL-2+', r_all('music'), {}),
  ('planetblupi-music-ogg', 'train', 'GPL-3+', r_all('music'), {}),
  ('naev-data', 'train', 'GPL-2+/GPL-3+/CC-BY-3.0/CC-BY-SA-3.0 (per file, see copyright)', r_dirs(music=('/snd/music/',), sfx=('/snd/sounds/',)), {}),
  ('widelands-data', 'train', 'GPL-2+ (some tracks CC-BY-SA-3.0)', r_dirs(music=('/data/music/',), sfx=('/data/sound/',)), {}),
  ('supertux-data', 'train', 'GPL-2+ (music) / GPL-3+ / CC-BY-SA (see copyright)', r_dirs(music=('/music/',), sfx=('/sounds/',), speech=('/speech/',)), {}),
  ('colobot-common-sounds', 'train', 'GPL-3+', r_dirs(music=('/music/',), sfx=('/sounds/',)), {}),
  ('freedroidrpg-data', 'train', 'GPL-2+', r_dirs(music=('/sound/music/',), sfx=('/sound/effects/',)), {}),
  ('flare-game', 'train', 'CC-BY-SA-3.0+', r_dirs(music=('/music/',), sfx=('/soundfx/',)), {}),
  ('hyperrogue-music', 'train', 'GPL-2+/CC-BY-SA-3.0/CC-BY-SA-4.0/CC-BY-3.0/CC0 (per file)', r_dirs(music=('/music/',), sfx=('/sounds/',)), {}),
  ('frozen-bubble-data', 'train', 'GPL-2', r_frozen, {}),
  ('extremetuxracer-data', 'train', 'GPL-2+', r_dirs(music=('/music/',), sfx=('/sounds/',)), {}),
  ('lincity-ng-data', 'train', 'GPL-2+', r_dirs(music=('/music/',), sfx=('/sounds/',)), {}),
  ('megaglest-data', 'train', 'CC-BY-SA-3.0', r_dirs(music=('/music/',), sfx=('/sounds/',)), {}),
  ('heroes-sound-tracks', 'train', 'GPL-2+', r_all('music'), {}),
  ('fb-music-high', 'train', 'GPL-2+', r_all('music'), {}),
  ('asc-music', 'train', 'GPL-2+', r_all('music'), {}),
  ('lomiri-sounds', 'train', 'CC0-1.0/CC-BY-3.0/CC-BY-4.0/CC-BY-SA-3.0 (per file)', r_lomiri, {}),
  ('ri-li-data', 'train', 'GPL-2 or GPL-3', r_dirs(music=('.xm',), sfx=('/sounds/',)), {}),
  ('scratch', 'train', 'CC-BY-SA-3.0', r_scratch, {}),
  # ---- TRAIN: sfx
  ('freeorion-data', 'train', 'CC-BY-SA-3.0', r_all('sfx'), {}),
  ('hydrogen-drumkits', 'train', 'GPL-2+/CC-BY-3.0/CC-BY-SA-3.0/CC0 (per kit)', r_all('sfx'), {}),
  ('sonic-pi-samples', 'train', 'CC0/MIT', r_all('sfx'), {}),
  ('lmms-common', 'train', 'GPL-2+', r_dirs(music=(), sfx=('/samples/',)), {}),
  ('openarena-data', 'train', 'GPL-2+', r_openarena, {}),
  ('wordwarvi-sound', 'train', 'CC-BY-SA-3.0', r_all('sfx'), {}),
  ('oxygen-sounds', 'train', 'LGPL-3.0+', r_all('sfx'), {}),
  ('deepin-sound-theme', 'train', 'GPL-3', r_all('sfx'), {}),
  ('tuxpaint-data', 'train', 'GPL-2+', r_all('sfx'), {}),
  # ---- TRAIN, only with --narrowband: 8 kHz telephone prompts (real voices) + music on hold
  ('asterisk-core-sounds-en-wav', 'narrow', 'CC-BY-SA-3.0', r_asterisk('en'), {}),
  ('asterisk-core-sounds-es-wav', 'narrow', 'CC-BY-SA-3.0', r_asterisk('es'), {}),
  ('asterisk-core-sounds-fr-wav', 'narrow', 'CC-BY-SA-3.0', r_asterisk('fr'), {}),
  ('asterisk-core-sounds-it-wav', 'narrow', 'CC-BY-SA-3.0', r_asterisk('it'), {}),
  ('asterisk-core-sounds-ru-wav', 'narrow', 'CC-BY-SA-3.0', r_asterisk('ru'), {}),
  ('asterisk-prompt-es-co', 'narrow', 'GPL-2+', r_asterisk('es'), {}),
  ('asterisk-prompt-fr-armelle', 'narrow', 'GPL-2+', r_asterisk('fr'), {}),
  ('asterisk-prompt-it-menardi-wav', 'narrow', 'CC-BY-SA-3.0', r_asterisk('it'), {}),
  ('asterisk-moh-opsound-wav', 'narrow', 'CC-BY-SA-3.0', r_all('music'), {}),
]
# files that are known-bad or not human recordings
def excluded(pkg, rel, sr):
    if pkg == 'klettres-data' and sr > 96000: return True      # 29 Danish files with a bogus 128 kHz header
    return False



def wanted_sources(narrow: bool, strict: bool, split: str = 'train') -> list[tuple]:
    """SOURCES filtered by the options: (package(s), split, license, rule, caps)."""
    wanted = []
    for s in SOURCES:
        sp = s[1]
        if sp == 'narrow':
            if not narrow or split == 'eval': continue
            sp = 'train'
        if split != 'both' and sp != split: continue
        if strict and s[0] == 'fillets-ng-data-cs': continue
        wanted.append((s[0], sp) + s[2:])
    return wanted


def classify(rule, rel: str) -> tuple[str, str] | None:
    """(kind, lang) of a file at `rel` (path inside the package) by its package's rule."""
    return rule('/' + rel.lower())


def plan_kind(files: list[tuple], pkg: str, split: str, kind: str, lic: str, caps: dict,
              cap_minutes: dict[str, float], clip_s: float) -> list[dict]:
    """The jobs for one (package, kind): files sorted by key, cut at the package cap.

    files: (key, full, rel, lang, seconds, orig_sr). Train music keeps at most
    120 s per track; caps are minutes per (package, kind) (0 = none).
    """
    if kind in caps: pcap, fcap = caps[kind]
    elif split == 'train': pcap, fcap = (cap_minutes[kind] or None), (120 if kind == 'music' else None)
    else: pcap, fcap = None, None
    jobs = []; acc = 0.0
    for _, full, rel, lang, dur, osr in sorted(files):
        if pcap is not None and acc >= pcap * 60: break
        take = min(dur, fcap) if fcap else dur
        if pcap is not None: take = min(take, pcap * 60 - acc + clip_s)
        jobs.append(dict(pkg=pkg, split=split, kind=kind, lic=lic, full=full, rel=rel, lang=lang, dur=dur, osr=osr, keep=take))
        acc += take
    return jobs


def segment_starts(num_samples: int, sample_rate: int, clip_s: float, keep_s: float) -> tuple[list[int], int]:
    """Cut a file into near-equal pieces <= clip_s; keep ~keep_s of them, evenly spaced.

    Returns (start samples, piece length).
    """
    nseg = max(1, math.ceil(num_samples / (clip_s * sample_rate) - 1e-9)); seg = math.ceil(num_samples / nseg)
    starts = list(range(0, num_samples, seg))
    kmax = max(1, int(round(keep_s / (seg / sample_rate))))
    if kmax < len(starts):
        idx = sorted(set(int((i + 0.5) * len(starts) / kmax) for i in range(kmax)))   # evenly spaced, away from the edges
        starts = [starts[i] for i in idx]
    return starts, seg


def hkey(s): return hashlib.sha1(s.encode()).hexdigest()


def probe(path):
    import soundfile as sf
    ext = os.path.splitext(path)[1].lower()
    if ext == '.gsm': return os.path.getsize(path) / 33 * 160 / 8000, 8000, 1
    try:
        i = sf.info(path); return i.duration, i.samplerate, i.channels
    except Exception:
        pass
    try:
        o = subprocess.run(['ffprobe', '-v', 'error', '-show_entries', 'format=duration:stream=sample_rate,channels',
                            '-of', 'default=nw=1', path], capture_output=True, text=True, timeout=120).stdout
        d = dict(l.split('=', 1) for l in o.split() if '=' in l)
        return float(d['duration']), int(d['sample_rate']), int(d['channels'])
    except Exception:
        return None


def sh(cmd, **kw): return subprocess.run(cmd, shell=True, check=True, **kw)
def fetch(names):
    debdir = os.path.join(CACHE, 'debs')
    names = names if isinstance(names, tuple) else (names,)
    for n in names:
        have = [f for f in os.listdir(debdir) if f.startswith(n + '_') and f.endswith('.deb')]
        if have: return n, os.path.join(debdir, sorted(have)[-1])
        r = subprocess.run(['apt-get', 'download', '-q', n], cwd=debdir, capture_output=True, text=True)
        have = [f for f in os.listdir(debdir) if f.startswith(n + '_') and f.endswith('.deb')]
        if have: return n, os.path.join(debdir, sorted(have)[-1])
    return names[0], None
def extract(pkg, deb):
    xdir = os.path.join(CACHE, 'x')
    dst = os.path.join(xdir, pkg); done = dst + '.done'
    if os.path.exists(done): return dst
    shutil.rmtree(dst, ignore_errors=True); os.makedirs(dst)
    pats = ' '.join("'*%s'" % e for e in AUDIO_EXT + ('.pk3', '.wz', '/copyright'))
    sh("dpkg-deb --fsys-tarfile '%s' | tar -x -C '%s' --wildcards --ignore-case %s 2>/dev/null || true" % (deb, dst, pats))
    for root, _, files in os.walk(dst):
        for f in files:
            if f.lower().endswith(('.pk3', '.wz')):
                zp = os.path.join(root, f); zd = os.path.join(dst, '_zip', f)
                with zipfile.ZipFile(zp) as z:
                    for m in z.namelist():
                        if m.lower().endswith(AUDIO_EXT): z.extract(m, zd)
                os.remove(zp)
    open(done, 'w').close()
    return dst



def convert(j):
    import numpy as np
    import soundfile as sf
    ext = os.path.splitext(j['full'])[1].lower()
    tmp = os.path.join(OUT, '.tmp', hkey(j['full']) + '.wav')
    chan = ['remix', '-'] if CH == 1 else ['channels', str(CH)]
    ok = False
    if ext in ('.ogg', '.oga', '.wav', '.flac', '.aiff', '.aif', '.mp3', '.gsm'):
        typ = {'.oga': ['-t', 'vorbis'], '.gsm': ['-t', 'gsm', '-r', '8000', '-c', '1']}.get(ext, [])
        r = subprocess.run(['sox', '-R', '-V1'] + typ + [j['full'], '-b', '16', '-e', 'signed-integer', tmp] + chan + ['rate', '-v', str(SR)],
                           capture_output=True)
        ok = r.returncode == 0 and os.path.exists(tmp)
    if not ok:   # opus, xm (libopenmpt) and anything sox refuses
        r = subprocess.run(['ffmpeg', '-v', 'error', '-nostdin', '-y', '-i', j['full'], '-af', 'aresample=%d:resampler=soxr:precision=28' % SR,
                            '-ac', str(CH), '-c:a', 'pcm_s16le', tmp], capture_output=True)
        ok = r.returncode == 0 and os.path.exists(tmp)
    if not ok:
        return [], '%s: decode failed %s' % (j['pkg'], j['rel'])
    x, sr = sf.read(tmp, dtype='int16', always_2d=True); os.remove(tmp)
    L = x.shape[0]
    if L < int(0.2 * SR): return [], None
    starts, seg = segment_starts(L, SR, CLIP, j['keep'])
    rows = []
    stem = re.sub(r'[^A-Za-z0-9._-]+', '_', os.path.splitext(j['rel'])[0].split('usr/share/')[-1]).strip('_.')
    if len(stem) > 100: stem = hkey(j['rel'])[:8] + '_' + stem[-90:]
    odir = os.path.join(OUT, j['split'], j['kind'], j['pkg']); os.makedirs(odir, exist_ok=True)
    for k, s0 in enumerate(starts):
        y = x[s0:s0 + seg]
        if y.shape[0] < int(0.3 * SR): continue
        yf = y.astype(np.float64) / 32768.0
        rms = 10 * np.log10(np.mean(yf ** 2) + 1e-20)
        if rms < -60: continue                     # digital (near-)silence
        m = yf.mean(1)
        P = np.abs(np.fft.rfft(m)) ** 2; fr = np.fft.rfftfreq(m.shape[0], 1.0 / SR)
        hf = 10 * np.log10(P[fr >= 8000].sum() / (P.sum() + 1e-20) + 1e-12)
        name = '%s_%03d.wav' % (stem, k)
        path = os.path.join(odir, name)
        sf.write(path, y, SR, subtype='PCM_16')
        rows.append([os.path.relpath(path, OUT), split_of(j['pkg']), j['kind'], j['pkg'], j['lic'], '%.3f' % (y.shape[0] / SR),
                     j['lang'], j['osr'], j['rel'], '%.1f' % rms, '%.1f' % hf])
    return rows, None


def inventory(pkg: str, root: str, rule, lic_dir: str) -> dict[str, list[tuple]]:
    """Copy the package's copyright file; group its audio files by kind."""
    for dp, _, fs in os.walk(root):
        for f in fs:
            if f == 'copyright' and '/doc/' in dp and not os.path.exists(os.path.join(lic_dir, pkg + '.copyright')):
                shutil.copy(os.path.join(dp, f), os.path.join(lic_dir, pkg + '.copyright'))
    groups: dict[str, list[tuple]] = {}
    for dp, _, fs in os.walk(root):
        for f in fs:
            if not f.lower().endswith(AUDIO_EXT): continue
            full = os.path.join(dp, f); rel = os.path.relpath(full, root)
            if os.path.islink(full): continue
            kl = classify(rule, rel)
            if kl is None: continue
            info = probe(full)
            if info is None: failed.append('%s: cannot probe %s' % (pkg, rel)); continue
            dur, osr, och = info
            if dur < 0.2 or excluded(pkg, rel, osr): continue
            groups.setdefault(kl[0], []).append((hkey(pkg + '/' + rel), full, rel, kl[1], dur, osr))
    return groups


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options of scripts/make_corpus.sh (same names)."""
    p = argparse.ArgumentParser(prog='make_corpus.sh', description=__doc__.split('\n')[0])
    p.add_argument('out')
    p.add_argument('--narrowband', action='store_true')
    p.add_argument('--strict', action='store_true')
    p.add_argument('--sr', type=int, default=24000)
    p.add_argument('--channels', type=int, choices=(1, 2), default=1)
    p.add_argument('--clip-sec', type=float, default=30.0)
    p.add_argument('--jobs', type=int, default=os.cpu_count() or 1)
    p.add_argument('--cache')
    p.add_argument('--music-cap-min', type=float, default=20.0)
    p.add_argument('--sfx-cap-min', type=float, default=15.0)
    p.add_argument('--speech-cap-min', type=float, default=0.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global OUT, CACHE, SR, CH, CLIP, JOBS, CAPS
    a = parse_args(argv)
    OUT = os.path.abspath(a.out); CACHE = os.path.abspath(a.cache or os.path.join(OUT, '.cache'))
    SR, CH, CLIP, JOBS = a.sr, a.channels, a.clip_sec, a.jobs
    CAPS = {'music': a.music_cap_min, 'sfx': a.sfx_cap_min, 'speech': a.speech_cap_min}
    SPLIT = 'train'
    for d in (os.path.join(CACHE, 'debs'), os.path.join(CACHE, 'x')): os.makedirs(d, exist_ok=True)
    os.chmod(os.path.join(CACHE, 'debs'), 0o777)
    wanted = wanted_sources(a.narrowband, a.strict, SPLIT)
    log('fetching %d packages into %s' % (len(wanted), CACHE))
    srcs = []
    for ent in wanted:
        pkg, deb = fetch(ent[0])
        if deb is None:
            failed.append('%s: apt-get download failed (not in this Debian release?)' % (ent[0],)); log('WARN', failed[-1]); continue
        srcs.append((pkg, deb) + ent[1:])
    log('extracting')
    with Pool(max(1, min(JOBS, 4))) as pool:
        roots = pool.starmap(extract, [(s[0], s[1]) for s in srcs])
    jobs = []
    lic_dir = os.path.join(OUT, 'licenses'); os.makedirs(lic_dir, exist_ok=True)
    for (pkg, deb, split, lic, rule, caps), root in zip(srcs, roots):
        for kind, files in inventory(pkg, root, rule, lic_dir).items():
            jobs += plan_kind(files, pkg, split, kind, lic, caps, CAPS, CLIP)
    log('planned %d source files, ~%.1f min' % (len(jobs), sum(j['keep'] for j in jobs) / 60))
    rows = convert_all(jobs, SPLIT)
    write_manifest(rows, SPLIT)
    write_summary(rows, SPLIT, a.narrowband, a.strict)
    return 0


def convert_all(jobs: list[dict], split: str) -> list[list]:
    """Decode, resample and cut every job in parallel; rows for the manifest."""
    os.makedirs(os.path.join(OUT, '.tmp'), exist_ok=True)
    shutil.rmtree(os.path.join(OUT, split), ignore_errors=True)
    jobs.sort(key=lambda j: -j['dur'])
    rows = []
    log('converting with %d workers to %d Hz, %d ch, clips <= %g s' % (JOBS, SR, CH, CLIP))
    with Pool(JOBS) as pool:
        for i, (r, err) in enumerate(pool.imap_unordered(convert, jobs, chunksize=8)):
            rows += r
            if err: failed.append(err)
            if (i + 1) % 2000 == 0: log('  %d / %d files' % (i + 1, len(jobs)))
    shutil.rmtree(os.path.join(OUT, '.tmp'), ignore_errors=True)
    return sorted(rows, key=lambda r: r[0])


MANIFEST_HEADER = ['path', 'split', 'kind', 'source_package', 'license', 'seconds', 'lang', 'orig_sr', 'orig_file', 'rms_dbfs', 'hf8k_db']


def write_manifest(rows: list[list], split: str) -> None:
    """OUT/manifest.csv; rows of files outside this run's folder (OUT/split/...) are kept."""
    man = os.path.join(OUT, 'manifest.csv')
    old = []
    if os.path.exists(man):
        with open(man) as fh:
            old = [r for r in csv.reader(fh)][1:]
        old = [r for r in old if r[0].split('/')[0] != split]
    with open(man, 'w', newline='') as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_HEADER)
        w.writerows(sorted(old + rows, key=lambda r: r[0]))


def summary_lines(rows: list[list]) -> list[str]:
    """Minutes, clips and packages per (split, kind), packages listed."""
    tot = {}
    for r in rows:
        k = (r[1], r[2], r[3]); acc = tot.setdefault(k, [0, 0.0, set()]); acc[0] += 1; acc[1] += float(r[5]); acc[2].add(r[6])
    lines = []
    for sp in ('train', 'valid'):
        for kind in ('speech', 'music', 'sfx'):
            ks = sorted(k for k in tot if k[0] == sp and k[1] == kind)
            if not ks: continue
            s = sum(tot[k][1] for k in ks); n = sum(tot[k][0] for k in ks)
            langs = sorted(set().union(*[tot[k][2] for k in ks]) - {''})
            lines.append('%-5s %-6s %7.1f min %6d clips %2d pkgs%s' % (sp, kind, s / 60, n, len(ks), ('  langs: ' + ','.join(langs)) if langs else ''))
            for k in ks: lines.append('        %-32s %7.1f min %6d clips' % (k[2], tot[k][1] / 60, tot[k][0]))
        s = sum(v[1] for k, v in tot.items() if k[0] == sp)
        if s: lines.append('%-5s TOTAL  %7.1f min (%.2f h)' % (sp, s / 60, s / 3600)); lines.append('')
    return lines


def write_summary(rows: list[list], split: str, narrow: bool, strict: bool) -> None:
    lines = ['make_corpus summary  (sr=%d ch=%d clip<=%gs split=%s narrowband=%d strict=%d)  wall %.0f s' % (SR, CH, CLIP, split, narrow, strict, time.time() - T0),
             'held out (valid) packages: %s' % ', '.join(sorted(VALID_PACKAGES)), '']
    lines += summary_lines(rows)
    if failed: lines += ['problems (%d):' % len(failed)] + ['  ' + f for f in failed[:50]]
    open(os.path.join(OUT, 'SUMMARY.txt'), 'w').write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    sys.exit(main())
