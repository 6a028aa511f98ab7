# Installs the libraries, headers, a pkg-config file and a CMake package.
include(CMakePackageConfigHelpers)

install(TARGETS concur concur_static EXPORT concurTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT concurTargets NAMESPACE concur::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/concur)

configure_package_config_file(cmake/concurConfig.cmake.in
  ${PROJECT_BINARY_DIR}/concurConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/concur)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/concurConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/concurConfig.cmake
  ${PROJECT_BINARY_DIR}/concurConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/concur)

# The .pc file finds its prefix relative to itself, so an installed tree
# can be moved (and `cmake --install --prefix` works).
file(RELATIVE_PATH CONCUR_PC_TO_PREFIX
  /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(cmake/concur.pc.in ${PROJECT_BINARY_DIR}/concur.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/concur.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
