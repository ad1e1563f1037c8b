"""gcp-storage-emulator's own command (``python tests/gcs_emulator.py start --port N ...``), with the
one response header that TensorStore needs and the emulator leaves out.

GCS sends an object's generation with its content (``x-goog-generation`` on a download); the
emulator does not. TensorStore takes the generation of what it read from that header, so without
it an object read back (an OCDBT manifest that TensorStore re-reads, e.g. after a retried request
of a slow server) has no valid generation, and the conditional write that follows fails with
"Malformed StorageGeneration". Here each download also carries the object's generation and
metageneration, as GCS's do. Nothing else of the emulator is changed.
"""

import sys
from http import HTTPStatus

from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
    _download(request, response, storage, *args, **kwargs)
    if response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
        obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        response["x-goog-generation"] = obj["generation"]
        response["x-goog-metageneration"] = obj["metageneration"]


objects.download = download  # before the server's routes are built from it

if __name__ == "__main__":
    from gcp_storage_emulator.__main__ import main

    sys.exit(main())
