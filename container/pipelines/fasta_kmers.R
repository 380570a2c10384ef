# fasta_kmers.R: count the sequences, residues and k-mers of one chunk of FASTA files.
# Base R only (the job image has no CRAN packages).
#
# Usage: Rscript --vanilla fasta_kmers.R K OUTPUT_DIR FILE...
# Writes OUTPUT_DIR/kmers.tsv (kmer<TAB>count, sorted by kmer, k-mers that occur only) and
# OUTPUT_DIR/summary.tsv (sequences<TAB>residues<TAB>k, one row).
#
# Counting rules (container/pipelines/fasta_kmers.py documents the same):
# - a record is a '>' header line plus the sequence lines up to the next header; blank lines and
#   white space inside lines are ignored; sequence data before the first header is an error;
# - residues are all the other characters of the sequence lines (N, IUPAC codes, '-' and '*' too);
# - k-mers are read case-insensitively and written upper-case; a k-mer containing any character
#   other than A, C, G or T is skipped (not counted, not an error);
# - k-mers never span two records, so a file's counts are the sum of its records' counts, which is
#   why a FASTA file split at record boundaries can be counted chunk by chunk and summed.
#
# Speed: every base is mapped to 0..3 (NA otherwise) through a byte lookup table and each k-mer
# becomes one integer, code = sum(base[i + j] * 4^(k - 1 - j)), built with k vector operations;
# tabulate() then counts codes. Integer order of the codes is alphabetical order of the k-mers.
# Memory: a 4^k vector of counts (128 MiB at k = 12) plus a few vectors of WINDOW integers.

WINDOW <- 5e6 # k-mer start positions handled per vector step; bounds memory on big chunks

base_lookup <- function() {
  lut <- rep(NA_integer_, 256)
  for (i in 1:4) {
    lut[utf8ToInt(c("A", "C", "G", "T")[i]) + 1L] <- i - 1L
    lut[utf8ToInt(c("a", "c", "g", "t")[i]) + 1L] <- i - 1L
  }
  lut
}

read_records <- function(path, k) {
  lines <- readLines(path, warn = FALSE, encoding = "bytes")
  lines <- gsub("\\s+", "", lines, perl = TRUE, useBytes = TRUE)
  lines <- lines[nzchar(lines)]
  is_header <- startsWith(lines, ">")
  if (length(lines) > 0 && !is_header[1]) {
    stop(sprintf("%s: sequence data before the first '>' header; is this a FASTA file?",
                 basename(path)), call. = FALSE)
  }
  previous_is_header <- c(FALSE, is_header[-length(is_header)])
  seq_lines <- lines[!is_header]
  starts_record <- previous_is_header[!is_header]
  record_lengths <- as.numeric(rowsum(nchar(seq_lines, type = "bytes"), cumsum(starts_record)))
  # '>' cannot be a base, so putting it between records stops k-mers from spanning two records.
  text <- paste0(ifelse(starts_record, ">", ""), seq_lines, collapse = "")
  list(sequences = sum(is_header), residues = sum(record_lengths),
       windows = sum(pmax(record_lengths - k + 1, 0)), bytes = charToRaw(text))
}

count_codes <- function(bytes, k, lut) {
  counts <- numeric(4^k)
  starts <- length(bytes) - k + 1
  if (starts < 1) return(counts)
  for (first in seq(1, starts, by = WINDOW)) {
    last <- min(first + WINDOW - 1, starts)
    code <- kmer_codes(lut[as.integer(bytes[first:(last + k - 1)]) + 1L], k)
    counts <- counts + tabulate(code[!is.na(code)] + 1L, nbins = 4^k)
  }
  counts
}

# The code of the k-mer at each start position of `base` (codes 0..3, NA for other characters),
# built by doubling, so about log2(k) vector steps instead of k: the code of an (a+b)-mer is the
# a-mer's code shifted by b bases plus the code of the b-mer that follows it. NA propagates, which
# is what skips k-mers containing other characters.
kmer_codes <- function(base, k) {
  result <- NULL
  size <- 0
  block <- base
  block_size <- 1
  repeat {
    if (bitwAnd(k, block_size) != 0) {
      if (is.null(result)) {
        result <- block
      } else {
        n <- length(result) - block_size
        result <- result[1:n] * as.integer(4^block_size) + block[(size + 1):(size + n)]
      }
      size <- size + block_size
    }
    if (2 * block_size > k) break
    n <- length(block) - block_size
    block <- block[1:n] * as.integer(4^block_size) + block[(block_size + 1):(block_size + n)]
    block_size <- 2 * block_size
  }
  result
}

# kmers.tsv written as bytes: building millions of R strings (one per k-mer) costs far more than
# the counting, so each row's letters, tab, digits and newline are placed into a raw vector,
# WINDOW rows at a time.
write_kmer_table <- function(counts, k, path) {
  con <- file(path, open = "wb")
  on.exit(close(con))
  writeBin(charToRaw("kmer\tcount\n"), con)
  present <- which(counts > 0)
  if (length(present) == 0) return(invisible())
  for (first in seq(1, length(present), by = WINDOW)) {
    rows <- present[first:min(first + WINDOW - 1, length(present))]
    writeBin(kmer_rows(rows - 1, counts[rows], k), con)
  }
}

kmer_rows <- function(codes, counts, k) {
  distinct <- unique(counts)
  width <- nchar(sprintf("%.0f", distinct))[match(counts, distinct)]
  row_end <- cumsum(k + width + 2)
  row_start <- row_end - (k + width + 2) # offset just before the row's first byte
  out <- raw(row_end[length(row_end)])
  letters <- charToRaw("ACGT")
  for (j in seq_len(k)) out[row_start + j] <- letters[(codes %/% 4^(k - j)) %% 4 + 1]
  out[row_start + k + 1] <- as.raw(9)
  for (d in seq_len(max(width))) {
    at <- which(width >= d)
    out[row_start[at] + k + 1 + d] <- as.raw(48 + (counts[at] %/% 10^(width[at] - d)) %% 10)
  }
  out[row_end] <- as.raw(10)
  out
}

write_tsv_lines <- function(lines, path) {
  con <- file(path, open = "wb")
  on.exit(close(con))
  writeLines(lines, con, sep = "\n", useBytes = TRUE)
}

main <- function(args) {
  if (length(args) < 3) stop("usage: fasta_kmers.R K OUTPUT_DIR FILE...", call. = FALSE)
  k <- suppressWarnings(as.integer(args[[1]]))
  if (is.na(k) || k < 1 || k > 12) stop(sprintf("k must be an integer from 1 to 12, got %s", args[[1]]), call. = FALSE)
  out_dir <- args[[2]]
  files <- args[-(1:2)]
  lut <- base_lookup()
  counts <- numeric(4^k)
  sequences <- 0
  residues <- 0
  windows <- 0
  for (path in files) {
    records <- read_records(path, k)
    counts <- counts + count_codes(records$bytes, k, lut)
    sequences <- sequences + records$sequences
    residues <- residues + records$residues
    windows <- windows + records$windows
    cat(sprintf("%s: %.0f sequences, %.0f residues\n", basename(path), records$sequences, records$residues))
  }
  if (sequences == 0) stop("no FASTA records ('>' header lines) in the input files", call. = FALSE)

  write_kmer_table(counts, k, file.path(out_dir, "kmers.tsv"))
  write_tsv_lines(c("sequences\tresidues\tk", sprintf("%.0f\t%.0f\t%d", sequences, residues, k)),
                  file.path(out_dir, "summary.tsv"))
  counted <- sum(counts)
  cat(sprintf("counted %.0f %d-mers (%.0f distinct); skipped %.0f containing characters other than ACGT\n",
              counted, k, sum(counts > 0), windows - counted))
}

main(commandArgs(trailingOnly = TRUE))
