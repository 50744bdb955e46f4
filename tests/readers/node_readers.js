// Reads env files with Node's own parser and the npm dotenv packages, many files per process.
// usage: node node_readers.js MODULES_DIR READER[,READER...] FILE...
// prints {"<reader>": {"<file>": {"values": {...}} | {"error": "..."}}}
"use strict";
const fs = require("fs");
const path = require("path");
const util = require("util");

const [modules, readerList, ...files] = process.argv.slice(2);
const need = (name) => require(path.join(modules, "node_modules", name));

function loadEnvFile(file) {
  const before = { ...process.env };
  process.loadEnvFile(file);
  const out = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (before[k] !== v) out[k] = v;
  }
  for (const k of Object.keys(out)) {
    if (k in before) process.env[k] = before[k];
    else delete process.env[k];
  }
  return out;
}

function dotenvExpand(dotenvName, expandName) {
  return (file) => {
    const parsed = need(dotenvName).parse(fs.readFileSync(file));
    return need(expandName).expand({ parsed, processEnv: {} }).parsed;
  };
}

const READERS = {
  "dotenv16": (file) => need("dotenv16").parse(fs.readFileSync(file)),
  "dotenv17": (file) => need("dotenv17").parse(fs.readFileSync(file)),
  "dotenv18": (file) => need("dotenv18").parse(fs.readFileSync(file)),
  "dotenv16+expand11": dotenvExpand("dotenv16", "dotenv-expand11"),
  "dotenv17+expand12": dotenvExpand("dotenv17", "dotenv-expand12"),
  "util.parseEnv": (file) => util.parseEnv(fs.readFileSync(file, "utf8")),
  "process.loadEnvFile": loadEnvFile,
  "json": (file) => JSON.parse(fs.readFileSync(file, "utf8")),
  "env": () => ({ ...process.env }),
};

const result = {};
for (const reader of readerList.split(",")) {
  const read = READERS[reader];
  if (!read) throw new Error(`unknown reader ${reader}`);
  result[reader] = {};
  for (const file of files) {
    try {
      result[reader][file] = { values: { ...read(file) } };
    } catch (err) {
      result[reader][file] = { error: String(err && err.message || err) };
    }
  }
}
process.stdout.write(JSON.stringify(result));
