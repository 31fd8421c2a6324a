// Package abr turns an uploaded media file into what the platform serves:
// it probes the file with ffprobe, picks an adaptive-bitrate (ABR) ladder,
// transcodes a video into HLS renditions with a single ffmpeg process, and
// writes a poster frame for videos and resized JPEG variants for images.
//
// Every input is treated as hostile. Probe refuses empty files, files that
// are not media, formats outside a fixed demuxer allow-list, truncated or
// corrupt files, and images or frames above a pixel limit; PNG, JPEG and GIF
// dimensions are read from the header with the standard library before
// ffprobe runs, so an image bomb never reaches a decoder. Each ffmpeg and
// ffprobe run gets -nostdin, a protocol allow-list of file and pipe, a
// demuxer allow-list, a decoder pixel cap, a minimal environment, a timeout
// and the caller's context; outputs are written only inside the directory
// the caller names.
//
// Errors that are the input's fault wrap ErrInvalid and carry a short,
// human-readable reason that can be shown to the uploader. Any other error
// (a missing binary, a full disk, a timeout, a cancelled context) does not
// wrap ErrInvalid and is worth retrying.
//
// TranscodeHLS decodes the source once and feeds every rendition from a
// split filter, which costs less CPU than one ffmpeg process per rendition;
// bench/abr measures the difference. ArgsHLS returns the exact argument list
// so that tests, benchmarks and documentation show the real command.
//
// The package has no package-level mutable state; all configuration is
// passed in Tools, Limits and TranscodeOptions.
package abr
