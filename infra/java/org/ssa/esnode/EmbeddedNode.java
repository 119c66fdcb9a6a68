package org.ssa.esnode;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.Node;

/**
 * Runs one Elasticsearch 8.14 node inside this JVM, from the server jar published on Maven Central.
 *
 * <p>The distribution's bootstrap (which refuses root and installs the security manager) is not
 * used: this is a development node bound to loopback. Settings come from
 * {@code <home>/config/elasticsearch.yml}, written by the Python launcher from the project's
 * settings; modules (the netty4 transport) are laid out under {@code <home>/modules}.
 */
public final class EmbeddedNode {
    private EmbeddedNode() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: EmbeddedNode <es-home>");
            System.exit(2);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        Path config = home.resolve("config");
        // The logging provider must exist before any server class (settings parsing included) logs.
        LogConfigurator.configureESLogging();
        Settings settings = Settings.builder()
            .loadFromPath(config.resolve("elasticsearch.yml"))
            .put("path.home", home.toString())
            .build();
        LogConfigurator.registerErrorListener();
        LogConfigurator.setNodeName(settings.get("node.name", "ssa-node"));
        LogConfigurator.configureWithoutConfig(settings);
        Files.createDirectories(home.resolve("plugins"));

        Node node = new Node(new Environment(settings, config));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.prepareForClose();
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                System.err.println("error while stopping the node: " + e);
            } finally {
                stopped.countDown();
            }
        }, "ssa-es-shutdown"));
        node.start();
        System.out.println("ssa-es-node started");
        stopped.await();
    }
}
