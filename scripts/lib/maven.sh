#!/usr/bin/env bash
# Sourced, not run: fetches jars from Maven Central for the engines we run from their jars (Kafka,
# ElasticMQ). One throwaway pom per engine, no project build.

# maven_copy_dependencies CACHE_DIR LIBS_DIR NAME DEPENDENCIES_XML
# Writes CACHE_DIR/pom.xml (artifact NAME) depending on DEPENDENCIES_XML (<dependency> elements) and
# copies their runtime closure into LIBS_DIR. Maven's output goes to CACHE_DIR/maven.log; on failure its
# last 40 lines are printed to stderr and the status is non-zero (the caller says what failed).
maven_copy_dependencies() {
  local cache=$1 libs=$2 name=$3 dependencies=$4
  local pom=$cache/pom.xml mvn_log=$cache/maven.log
  mkdir -p "$cache"
  cat >"$pom" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<!-- Throwaway pom written by scripts/lib/maven.sh: only used to fetch the $name jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.conveyor</groupId>
  <artifactId>$name</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
$dependencies
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>3.8.1</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
POM
  if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$libs" >"$mvn_log" 2>&1; then
    tail -n 40 "$mvn_log" >&2
    return 1
  fi
}
