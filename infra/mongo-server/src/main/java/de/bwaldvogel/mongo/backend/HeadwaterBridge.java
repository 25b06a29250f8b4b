package de.bwaldvogel.mongo.backend;

import java.util.List;

import de.bwaldvogel.mongo.bson.Document;

/**
 * Headwater's own code, in the library's package only to reach three package-private helpers
 * (projection, BSON size, cursor replies) that the streaming query path needs. Nothing of the
 * library is copied: each method calls the library's own implementation.
 */
public final class HeadwaterBridge {

    private HeadwaterBridge() {
    }

    /** The library's find-projection of {@code document}. */
    public static Document project(Document fields, String idField, Document document) {
        return new Projection(fields, idField).projectDocument(document);
    }

    /** The BSON size of {@code document} in bytes. */
    public static int bsonSize(Document document) {
        return Utils.calculateSize(document);
    }

    public static Document firstBatch(String ns, List<Document> documents, long cursorId) {
        return Utils.firstBatchCursorResponse(ns, documents, cursorId);
    }
}
